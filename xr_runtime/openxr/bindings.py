"""The GL context an OpenXR session renders with, and the binding struct that hands it to the
runtime in xrCreateSession (`SessionCreateInfo.next`). One class per binding (openxr_graphics
chooses which):

* `EglGraphics`   — surfaceless EGL context (`HeadlessGLContext`) + `XrGraphicsBindingEGLMNDX`.
* `GlxGraphics`   — hidden GLFW window's GLX context + `XrGraphicsBindingOpenGLXlibKHR`.
* `Win32Graphics` — hidden GLFW window's WGL context + `XrGraphicsBindingOpenGLWin32KHR`.
  **Untested here** (no Windows machine in CI); it mirrors the GLX class step by step.

Each keeps its binding struct alive for the session's lifetime (the runtime reads it during
xrCreateSession only, but a dangling `next` pointer is never worth the bytes). `window` is the
GLFW context of the window-system bindings (the mirror can draw into it), None for EGL.
"""
from __future__ import annotations

import ctypes
import logging
from types import ModuleType

from xr_runtime.gl.context_config import GLContextConfig
from xr_runtime.gl.glfw_context import GlfwContextConfig, GlfwGLContext
from xr_runtime.openxr.graphics import GraphicsKind

log = logging.getLogger(__name__)


class _Graphics:
    """What every binding offers the session: `binding` (the struct), `context` (current-able,
    closable), `renderer` / `gl_version` of that context, and `window` (GLFW, or None)."""

    kind: GraphicsKind
    window = None

    def pointer(self) -> ctypes.c_void_p:
        return ctypes.cast(ctypes.pointer(self.binding), ctypes.c_void_p)

    def make_current(self) -> None:
        self.context.make_current()

    def close(self) -> None:
        self.context.close()


class EglGraphics(_Graphics):
    kind: GraphicsKind = "egl"

    def __init__(self, xr: ModuleType, config: GLContextConfig) -> None:
        from xr_runtime.gl.egl_context import HeadlessGLContext  # OpenGL.EGL: only where EGL is used

        self.context = HeadlessGLContext(config)
        display, egl_config, context = self.context.typed_handles()
        self.binding = xr.GraphicsBindingEGLMNDX(
            get_proc_address=ctypes.cast(self.context.get_proc_address_pointer(), xr.PFN_xrEglGetProcAddressMNDX),
            display=display, config=egl_config, context=context)
        self.renderer = self.context.renderer
        self.gl_version = self.context.gl_version


class _WindowGraphics(_Graphics):
    """A hidden GLFW window's context; `_binding()` builds the struct while it is current."""

    def __init__(self, config: GlfwContextConfig) -> None:
        self.window = self.context = GlfwGLContext(config)
        try:
            self.binding = self._binding()
        except BaseException:
            self.window.close()
            raise
        self.renderer = self.window.renderer
        self.gl_version = self.window.gl_version

    def _binding(self):
        raise NotImplementedError


class GlxGraphics(_WindowGraphics):
    kind: GraphicsKind = "glx"

    def __init__(self, xr: ModuleType, config: GlfwContextConfig) -> None:
        self._xr = xr
        super().__init__(config)
        log.info("GLX binding: visual 0x%x, drawable 0x%x", self.handles.visualid, self.handles.drawable)

    def _binding(self):
        from xr_runtime.gl.native_handles import current_glx_handles

        xr = self._xr
        handles = self.handles = current_glx_handles()
        # pyopenxr types the pointer fields with PyOpenGL's GLX types; cast to whatever they are.
        field = dict(xr.GraphicsBindingOpenGLXlibKHR._fields_)
        return xr.GraphicsBindingOpenGLXlibKHR(
            x_display=ctypes.cast(ctypes.c_void_p(handles.display), field["x_display"]),
            visualid=handles.visualid,
            glx_fbconfig=ctypes.cast(ctypes.c_void_p(handles.fbconfig), field["glx_fbconfig"]),
            glx_drawable=handles.drawable,
            glx_context=ctypes.cast(ctypes.c_void_p(handles.context), field["glx_context"]))


class Win32Graphics(_WindowGraphics):
    """Untested here: Windows only. The WGL context of a hidden GLFW window."""

    kind: GraphicsKind = "win32"

    def __init__(self, xr: ModuleType, config: GlfwContextConfig) -> None:
        self._xr = xr
        super().__init__(config)

    def _binding(self):
        from xr_runtime.gl.native_handles import current_wgl_handles

        xr = self._xr
        handles = current_wgl_handles()
        field = dict(xr.GraphicsBindingOpenGLWin32KHR._fields_)  # HDC / PyOpenGL's HGLRC
        return xr.GraphicsBindingOpenGLWin32KHR(
            h_dc=ctypes.cast(ctypes.c_void_p(handles.hdc), field["h_dc"]),
            h_glrc=ctypes.cast(ctypes.c_void_p(handles.hglrc), field["h_glrc"]))


def create_graphics(kind: GraphicsKind, xr: ModuleType, egl: GLContextConfig, window: GlfwContextConfig):
    if kind == "egl":
        return EglGraphics(xr, egl)
    if kind == "glx":
        return GlxGraphics(xr, window)
    if kind == "win32":
        return Win32Graphics(xr, window)
    raise ValueError(f"unknown graphics binding {kind!r}")
