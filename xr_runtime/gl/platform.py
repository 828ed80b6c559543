"""Which window-system binding PyOpenGL uses, and importing pyopenxr without breaking it.

PyOpenGL picks its platform (GLX, EGL, ...) once, when `OpenGL` is first imported, from the
environment variable PYOPENGL_PLATFORM; the choice decides which `GetCurrentContext` PyOpenGL's
per-context bookkeeping uses. pyopenxr's Linux module (`import xr`) then replaces
`OpenGL.platform.PLATFORM` with a GLX platform object, whatever was chosen before.

What goes wrong when the platform does not match the kind of context that is current:

* Plain GL 1.x entry points still work: on glvnd systems (current Mesa and NVIDIA drivers) libGL
  (GLX platform) and libOpenGL (EGL platform) both dispatch through libGLdispatch to the context
  made current by *either* API, and `OpenGL.EGL` loads libEGL on either platform.
* Everything PyOpenGL resolves lazily — every function newer than GL 1.1 (glTexStorage2D, ...) —
  goes through `OpenGL.platform.PLATFORM` *at call time*, which checks the extension against the
  platform's current context: `glXGetCurrentContext()` is NULL while an EGL context is current,
  so the call fails with NullFunctionError (seen here: `import xr` first, then an EGL context).
* PyOpenGL's per-context bookkeeping (`contextdata`, used by wrappers such as
  `glVertexAttribPointer`) asks the platform's `GetCurrentContext` too; the renderer calls the raw
  entry point for those, so it does not depend on this bookkeeping at all.

What this module does — at the moment a context is made, never at import time:

1. `use_platform("egl")` / `use_platform("glx")` makes PyOpenGL resolve functions and contexts
   through that platform. If OpenGL is not loaded yet in this process (and the user did not set
   PYOPENGL_PLATFORM), it is loaded with that platform directly; otherwise PyOpenGL's platform
   object *and* the functions it installed into `OpenGL.platform` are switched after the fact.
   `HeadlessGLContext` calls it with "egl"; `GlfwGLContext.make_current` (the OpenXR GLX binding)
   and the desktop backend with "glx" for their GLFW/GLX windows. A process draws with one kind of
   context at a time, and switches whenever the kind changes (an EGL session after a GLX one:
   tests/test_openxr_glx.py). Windows draws through WGL, PyOpenGL's default there.
2. `import_xr()` imports pyopenxr and puts back the platform object that was active before.

Modules that draw import `OpenGL` plainly; which platform serves them is decided by the context
that is current when they call into it. Nothing here holds state beyond what PyOpenGL holds.
"""
from __future__ import annotations

import importlib
import os
import sys
from types import ModuleType

PLATFORM_ENV = "PYOPENGL_PLATFORM"


def current_platform_name() -> str:
    """Name of the PyOpenGL platform: 'egl', 'glx', ... ('unloaded' before OpenGL is imported)."""
    if "OpenGL.platform" not in sys.modules:
        return os.environ.get(PLATFORM_ENV, "") or "unloaded"
    platform = sys.modules["OpenGL.platform"].PLATFORM
    return type(platform).__name__.replace("Platform", "").lower()


_PLATFORM_CLASSES = {
    "egl": ("OpenGL.platform.egl", "EGLPlatform"),
    "glx": ("OpenGL.platform.glx", "GLXPlatform"),
}


def use_platform(name: str) -> bool:
    """Make PyOpenGL resolve functions and contexts through `name` ('egl' or 'glx') from now on.

    Returns True if it had to switch. Call it before making a context of that kind current.
    """
    if "OpenGL.platform" not in sys.modules and not os.environ.get(PLATFORM_ENV):
        os.environ[PLATFORM_ENV] = name  # OpenGL's first use in this process: load the right one directly
    import OpenGL.platform as gl_platform

    if current_platform_name() == name:
        return False
    module_name, class_name = _PLATFORM_CLASSES[name]
    platform_class = getattr(importlib.import_module(module_name), class_name)
    # install() rebinds PLATFORM and the helper functions (GetCurrentContext, ...) in the module.
    platform_class().install(vars(gl_platform))
    return True


def import_xr() -> ModuleType:
    """Import pyopenxr, undoing its switch of PyOpenGL's platform object to GLX."""
    import OpenGL.platform as gl_platform

    before = gl_platform.PLATFORM
    xr = importlib.import_module("xr")
    gl_platform.PLATFORM = before
    return xr
