"""The window-system handles of the *current* OpenGL context, as OpenXR's GL bindings want them.

Called through ctypes on the system's libGL / opengl32 directly rather than PyOpenGL's GLX/WGL
modules: those bind to whatever platform PyOpenGL had when they were first imported (pyopenxr
imports `OpenGL.GLX` while it forces the GLX platform, gl_platform then restores EGL), and these
few calls need no wrappers.

GLX: `XrGraphicsBindingOpenGLXlibKHR` wants the X display, the visual id, the GLXFBConfig, the
drawable and the context. The current display, drawable and context come from glXGetCurrent*;
the FBConfig is found again from the context's GLX_FBCONFIG_ID (GLFW does not expose the one it
chose), and the visual id is that FBConfig's GLX_VISUAL_ID.

WGL: `XrGraphicsBindingOpenGLWin32KHR` wants the HDC and HGLRC (wglGetCurrentDC /
wglGetCurrentContext). **Untested here**: no Windows machine in CI; written from the WGL and
OpenXR specifications only.
"""
from __future__ import annotations

import ctypes
import ctypes.util
from dataclasses import dataclass

from core.errors import BackendUnavailable

GLX_SCREEN = 0x800C
GLX_FBCONFIG_ID = 0x8013
GLX_VISUAL_ID = 0x800B


class NativeHandleError(BackendUnavailable):
    """No current context of the expected kind, or a query failed; the message says which."""


@dataclass(frozen=True)
class GlxHandles:
    display: int      # Display*
    visualid: int     # VisualID of the context's FBConfig
    fbconfig: int     # GLXFBConfig
    drawable: int     # GLXDrawable (XID)
    context: int      # GLXContext


@dataclass(frozen=True)
class WglHandles:
    hdc: int          # HDC of the window the context is current on
    hglrc: int        # HGLRC


def _load(names: tuple[str, ...]) -> ctypes.CDLL:
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as exc:
            errors.append(str(exc))
    raise NativeHandleError(f"cannot load {' or '.join(names)}: {'; '.join(errors)}")


def current_glx_handles() -> GlxHandles:
    """Handles of the GLX context current on this thread (raises if none is)."""
    gl = _load(("libGL.so.1", ctypes.util.find_library("GL") or "libGL.so"))
    x11 = _load(("libX11.so.6", ctypes.util.find_library("X11") or "libX11.so"))
    gl.glXGetCurrentContext.restype = ctypes.c_void_p
    gl.glXGetCurrentDisplay.restype = ctypes.c_void_p
    gl.glXGetCurrentDrawable.restype = ctypes.c_ulong
    gl.glXQueryContext.restype = ctypes.c_int
    gl.glXQueryContext.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    gl.glXChooseFBConfig.restype = ctypes.POINTER(ctypes.c_void_p)
    gl.glXChooseFBConfig.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
                                     ctypes.POINTER(ctypes.c_int)]
    gl.glXGetFBConfigAttrib.restype = ctypes.c_int
    gl.glXGetFBConfigAttrib.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
    x11.XFree.argtypes = [ctypes.c_void_p]

    context = gl.glXGetCurrentContext()
    if not context:
        raise NativeHandleError("no GLX context is current on this thread")
    display = gl.glXGetCurrentDisplay()
    drawable = gl.glXGetCurrentDrawable()
    if not display or not drawable:
        raise NativeHandleError("the current GLX context has no display or drawable")

    def query(attribute: int, what: str) -> int:
        value = ctypes.c_int()
        if gl.glXQueryContext(display, context, attribute, ctypes.byref(value)) != 0:
            raise NativeHandleError(f"glXQueryContext({what}) failed")
        return value.value

    screen, fbconfig_id = query(GLX_SCREEN, "GLX_SCREEN"), query(GLX_FBCONFIG_ID, "GLX_FBCONFIG_ID")
    attributes = (ctypes.c_int * 3)(GLX_FBCONFIG_ID, fbconfig_id, 0)
    count = ctypes.c_int()
    configs = gl.glXChooseFBConfig(display, screen, attributes, ctypes.byref(count))
    if not configs or count.value < 1:
        raise NativeHandleError(f"no GLXFBConfig with id 0x{fbconfig_id:x}")
    try:
        # The array is ours to free; the configs it points to belong to the display.
        fbconfig = configs[0]
        visual = ctypes.c_int()
        if gl.glXGetFBConfigAttrib(display, fbconfig, GLX_VISUAL_ID, ctypes.byref(visual)) != 0:
            raise NativeHandleError("glXGetFBConfigAttrib(GLX_VISUAL_ID) failed")
    finally:
        x11.XFree(configs)
    return GlxHandles(display=display, visualid=visual.value, fbconfig=fbconfig, drawable=drawable,
                      context=context)


def current_wgl_handles() -> WglHandles:
    """HDC and HGLRC of the WGL context current on this thread. Untested here (Windows only)."""
    try:
        opengl32 = ctypes.WinDLL("opengl32")  # type: ignore[attr-defined]  (Windows only)
    except (AttributeError, OSError) as exc:
        raise NativeHandleError(f"opengl32.dll not available: {exc}") from exc
    opengl32.wglGetCurrentDC.restype = ctypes.c_void_p
    opengl32.wglGetCurrentContext.restype = ctypes.c_void_p
    hglrc = opengl32.wglGetCurrentContext()
    hdc = opengl32.wglGetCurrentDC()
    if not hglrc or not hdc:
        raise NativeHandleError("no WGL context is current on this thread")
    return WglHandles(hdc=hdc, hglrc=hglrc)
