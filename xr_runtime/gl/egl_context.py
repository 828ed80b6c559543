"""Headless OpenGL 4.x core contexts through EGL: no window system, no X server.

Two ways to reach a GPU (or Mesa's llvmpipe) without a display:

* ``surfaceless`` — `EGL_MESA_platform_surfaceless`; Mesa's headless platform, used in CI.
* ``device`` — `EGL_EXT_platform_device`; what NVIDIA's driver offers headless (and where
  CUDA-GL interop lives). Mesa exposes a software device too (`EGL_MESA_device_software`),
  so this path runs in CI as well.
* ``default`` — `eglGetDisplay(EGL_DEFAULT_DISPLAY)`; what generic code (and pyopenxr's helper)
  does. Without a display it needs ``EGL_PLATFORM=surfaceless`` in the environment.

The context is made current without any surface (`EGL_KHR_surfaceless_context`); rendering
goes to framebuffer objects. The handles (`display`, `config`, `context`) are what OpenXR's
`XR_MNDX_egl_enable` binding needs.
"""
from __future__ import annotations

import ctypes
import logging

from OpenGL import (
    EGL,
    GL,
)

from core.errors import BackendUnavailable
from xr_runtime.gl.context_config import DisplayKind, GLContextConfig  # noqa: F401  (re-exported)
from xr_runtime.gl.platform import use_platform

log = logging.getLogger(__name__)

EGL_PLATFORM_SURFACELESS_MESA = 0x31DD
EGL_PLATFORM_DEVICE_EXT = 0x313F
EGL_DEVICE_EXT = 0x322C
EGL_CONTEXT_OPENGL_DEBUG = 0x31B0
EGL_CUDA_DEVICE_NV = 0x323A
EGL_DRM_DEVICE_FILE_EXT = 0x3233



class GLContextError(BackendUnavailable):
    """An EGL/GL context could not be created or used; the message says which step failed."""


def _egl_proc(name: str, restype, *argtypes):
    """An EGL extension entry point through eglGetProcAddress, or None when absent."""
    address = EGL.eglGetProcAddress(name.encode())
    if not address:
        return None
    return ctypes.CFUNCTYPE(restype, *argtypes)(ctypes.cast(address, ctypes.c_void_p).value)


def _egl_error(step: str) -> GLContextError:
    return GLContextError(f"{step} failed (EGL error 0x{EGL.eglGetError():04x})")


def _client_extensions() -> set[str]:
    raw = EGL.eglQueryString(EGL.EGL_NO_DISPLAY, EGL.EGL_EXTENSIONS)
    return set(raw.decode().split()) if raw else set()


def _query_devices() -> list[int]:
    query = _egl_proc(
        "eglQueryDevicesEXT", ctypes.c_uint, ctypes.c_int,
        ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
    )
    if query is None:
        raise GLContextError("EGL_EXT_device_enumeration is not available")
    devices = (ctypes.c_void_p * 16)()
    count = ctypes.c_int()
    if not query(16, devices, ctypes.byref(count)):
        raise _egl_error("eglQueryDevicesEXT")
    return [devices[i] for i in range(count.value)]


def _device_attrib(device: int, attribute: int) -> int | None:
    query = _egl_proc(
        "eglQueryDeviceAttribEXT", ctypes.c_uint, ctypes.c_void_p, ctypes.c_int,
        ctypes.POINTER(ctypes.c_ssize_t),
    )
    if query is None:
        return None
    value = ctypes.c_ssize_t()
    return value.value if query(device, attribute, ctypes.byref(value)) else None


def _platform_display(platform: int, native: int | None) -> int:
    get_display = _egl_proc(
        "eglGetPlatformDisplayEXT", ctypes.c_void_p, ctypes.c_uint, ctypes.c_void_p,
        ctypes.POINTER(ctypes.c_int),
    )
    if get_display is None:
        raise GLContextError("EGL_EXT_platform_base is not available")
    display = get_display(platform, native, None)
    if not display:
        raise _egl_error(f"eglGetPlatformDisplayEXT(0x{platform:x})")
    return display


def _open_display(config: GLContextConfig) -> int:
    if config.display == "default":
        display = EGL.eglGetDisplay(EGL.EGL_DEFAULT_DISPLAY)
        if not display:
            raise _egl_error("eglGetDisplay (without a display set EGL_PLATFORM=surfaceless)")
        return ctypes.cast(display, ctypes.c_void_p).value
    if config.display == "surfaceless":
        if "EGL_MESA_platform_surfaceless" not in _client_extensions():
            raise GLContextError("EGL_MESA_platform_surfaceless is not offered by this EGL")
        return _platform_display(EGL_PLATFORM_SURFACELESS_MESA, None)
    if config.display == "device":
        devices = _query_devices()
        if not devices:
            raise GLContextError("no EGL devices")
        if config.device_index is not None:
            if not 0 <= config.device_index < len(devices):
                raise GLContextError(f"EGL device {config.device_index} of {len(devices)} requested")
            return _platform_display(EGL_PLATFORM_DEVICE_EXT, devices[config.device_index])
        if config.cuda_device is not None:
            for device in devices:
                if _device_attrib(device, EGL_CUDA_DEVICE_NV) == config.cuda_device:
                    return _platform_display(EGL_PLATFORM_DEVICE_EXT, device)
            log.warning("no EGL device matches CUDA device %d; using the first", config.cuda_device)
        return _platform_display(EGL_PLATFORM_DEVICE_EXT, devices[0])
    raise GLContextError(f"unknown display kind {config.display!r}")


def list_egl_devices() -> list[dict[str, object]]:
    """The EGL devices this machine offers, with their DRM node and CUDA index where known."""
    out = []
    for index, device in enumerate(_query_devices()):
        out.append({
            "index": index,
            "cuda_device": _device_attrib(device, EGL_CUDA_DEVICE_NV),
            "has_drm_node": _device_attrib(device, EGL_DRM_DEVICE_FILE_EXT) is not None,
        })
    return out


class HeadlessGLContext:
    """An EGL display + OpenGL core context, current on the creating thread until `close()`.

    Use as a context manager or call `close()`; GL objects must be deleted before that.
    """

    def __init__(self, config: GLContextConfig | None = None) -> None:
        self.config = config or GLContextConfig()
        if use_platform("egl"):
            log.info("switched PyOpenGL to its EGL platform (another module imported OpenGL first)")
        self.display = _open_display(self.config)
        major, minor = EGL.EGLint(), EGL.EGLint()
        if not EGL.eglInitialize(self.display, ctypes.pointer(major), ctypes.pointer(minor)):
            raise _egl_error("eglInitialize")
        self.egl_version = (major.value, minor.value)
        self._closed = False
        try:
            self.config_handle = self._choose_config()
            if not EGL.eglBindAPI(EGL.EGL_OPENGL_API):
                raise _egl_error("eglBindAPI(EGL_OPENGL_API)")
            self.context, self.gl_version = self._create_context()
            self.make_current()
        except Exception:
            EGL.eglTerminate(self.display)
            self._closed = True
            raise
        self.renderer = (GL.glGetString(GL.GL_RENDERER) or b"?").decode()
        log.info("EGL %d.%d %s display, OpenGL %d.%d core on %s", *self.egl_version,
                 self.config.display, *self.gl_version, self.renderer)

    # OpenXR's XR_MNDX_egl_enable wants the config too; any RGBA8 config that can render GL works.
    def _choose_config(self):
        attributes = [
            EGL.EGL_RED_SIZE, 8, EGL.EGL_GREEN_SIZE, 8, EGL.EGL_BLUE_SIZE, 8,
            EGL.EGL_ALPHA_SIZE, 8, EGL.EGL_DEPTH_SIZE, 24,
            EGL.EGL_RENDERABLE_TYPE, EGL.EGL_OPENGL_BIT,
            EGL.EGL_SURFACE_TYPE, EGL.EGL_PBUFFER_BIT,
            EGL.EGL_NONE,
        ]
        configs = (EGL.EGLConfig * 1)()
        count = EGL.EGLint()
        if not EGL.eglChooseConfig(self.display, attributes, configs, 1, ctypes.pointer(count)):
            raise _egl_error("eglChooseConfig")
        if count.value < 1:
            # Device displays may offer no pbuffer configs; surfaceless rendering needs none.
            attributes[-3:-1] = []
            if not EGL.eglChooseConfig(self.display, attributes, configs, 1, ctypes.pointer(count)):
                raise _egl_error("eglChooseConfig")
            if count.value < 1:
                raise GLContextError("no EGL config renders OpenGL with RGBA8 + depth")
        return configs[0]

    def _create_context(self):
        versions = [(self.config.major, self.config.minor)]
        versions += [v for v in ((4, 6), (4, 5), (4, 3), (4, 1), (3, 3)) if v < versions[0]]
        for major, minor in versions:
            attributes = [
                EGL.EGL_CONTEXT_MAJOR_VERSION, major,
                EGL.EGL_CONTEXT_MINOR_VERSION, minor,
                EGL.EGL_CONTEXT_OPENGL_PROFILE_MASK, EGL.EGL_CONTEXT_OPENGL_CORE_PROFILE_BIT,
            ]
            if self.config.debug:
                attributes += [EGL_CONTEXT_OPENGL_DEBUG, EGL.EGL_TRUE]
            attributes.append(EGL.EGL_NONE)
            context = EGL.eglCreateContext(self.display, self.config_handle, EGL.EGL_NO_CONTEXT,
                                           attributes)
            if context:
                return context, (major, minor)
        raise _egl_error("eglCreateContext (OpenGL >= 3.3 core)")

    def make_current(self) -> None:
        if not EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                                  self.context):
            raise _egl_error("eglMakeCurrent (surfaceless)")

    def release_current(self) -> None:
        EGL.eglMakeCurrent(self.display, EGL.EGL_NO_SURFACE, EGL.EGL_NO_SURFACE,
                           EGL.EGL_NO_CONTEXT)

    @property
    def display_pointer(self) -> int:
        return ctypes.cast(self.display, ctypes.c_void_p).value or 0

    @property
    def context_pointer(self) -> int:
        return ctypes.cast(self.context, ctypes.c_void_p).value or 0

    @property
    def config_pointer(self) -> int:
        return ctypes.cast(self.config_handle, ctypes.c_void_p).value or 0

    def typed_handles(self):
        """(display, config, context) as PyOpenGL's EGL pointer types, as pyopenxr wants them."""
        return (ctypes.cast(ctypes.c_void_p(self.display_pointer), EGL.EGLDisplay),
                ctypes.cast(ctypes.c_void_p(self.config_pointer), EGL.EGLConfig),
                ctypes.cast(ctypes.c_void_p(self.context_pointer), EGL.EGLContext))

    @staticmethod
    def get_proc_address_pointer() -> int:
        """Address of eglGetProcAddress, for XrGraphicsBindingEGLMNDX.getProcAddress."""
        return ctypes.cast(EGL.eglGetProcAddress.load(), ctypes.c_void_p).value

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.release_current()
        EGL.eglDestroyContext(self.display, self.context)
        EGL.eglTerminate(self.display)

    def __enter__(self) -> "HeadlessGLContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
