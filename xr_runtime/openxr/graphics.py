"""Which OpenGL binding an OpenXR session uses, and the instance extensions that binding needs.

Three bindings exist for desktop OpenGL:

* ``egl``  — `XR_MNDX_egl_enable`: a surfaceless EGL context, no window system at all (Monado;
  CI and headless machines). Needs `XR_MNDX_egl_enable` from the runtime.
* ``glx``  — `XrGraphicsBindingOpenGLXlibKHR`: the GLX context of a (hidden) GLFW window on an X
  display. What SteamVR on Linux offers (it has no `XR_MNDX_egl_enable`), and what any runtime
  takes when an X display exists; the window doubles as the mirror.
* ``win32`` — `XrGraphicsBindingOpenGLWin32KHR`: the WGL context of a hidden GLFW window (Windows).

"auto" decides from the platform, the display and what the runtime offers:

* Windows → win32.
* An X display (``DISPLAY``) → glx, whatever else the runtime offers: the desktop's GLX driver is
  the one the compositor uses, and the mirror then needs no host round trip.
* No X display → egl, which needs the runtime's `XR_MNDX_egl_enable`; a runtime without it (only
  GLX) cannot be driven without an X server, and the error says so.

The session falls back from an automatic GLX choice to EGL when the X server gives no GLX context
(a stale DISPLAY) and the runtime offers EGL (openxr_session._create_graphics).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Collection, Literal, Mapping

from xr_runtime.openxr.errors import XrUnavailableError

GraphicsRequest = Literal["auto", "egl", "glx", "win32"]
GraphicsKind = Literal["egl", "glx", "win32"]

OPENGL_EXTENSION = "XR_KHR_opengl_enable"
EGL_EXTENSION = "XR_MNDX_egl_enable"


@dataclass(frozen=True)
class GraphicsChoice:
    kind: GraphicsKind
    reason: str


def required_extensions(kind: GraphicsKind) -> tuple[str, ...]:
    """Instance extensions the binding cannot work without."""
    if kind == "egl":
        return (OPENGL_EXTENSION, EGL_EXTENSION)
    return (OPENGL_EXTENSION,)


def choose_graphics(requested: str, offered: Collection[str], env: Mapping[str, str] = os.environ,
                    platform: str = sys.platform) -> GraphicsChoice:
    """The binding for `requested` ('auto' or a kind) given the runtime's extensions.

    Raises XrUnavailableError when the runtime or the machine cannot give the binding, with the
    reason (missing extension, no X display, wrong platform).
    """
    if requested not in ("auto", "egl", "glx", "win32"):
        raise ValueError(f"unknown graphics binding {requested!r} (auto, egl, glx, win32)")
    if OPENGL_EXTENSION not in offered:
        raise XrUnavailableError(f"OpenXR runtime lacks {OPENGL_EXTENSION}")
    windows = platform.startswith("win")
    display = env.get("DISPLAY", "")
    if requested == "auto":
        if windows:
            choice = GraphicsChoice("win32", "Windows")
        elif display:
            choice = GraphicsChoice("glx", f"X display {display} is set")
        elif EGL_EXTENSION in offered:
            choice = GraphicsChoice("egl", f"no X display; the runtime offers {EGL_EXTENSION}")
        else:
            raise XrUnavailableError(
                f"the OpenXR runtime offers no {EGL_EXTENSION} (only GLX, e.g. SteamVR) and there is no X "
                "display (DISPLAY unset): start an X server or run on the desktop")
    else:
        choice = GraphicsChoice(requested, "requested")
    if choice.kind == "win32" and not windows:
        raise XrUnavailableError("the win32 (WGL) binding needs Windows")
    if choice.kind in ("egl", "glx") and windows:
        raise XrUnavailableError(f"the {choice.kind} binding needs Linux")
    if choice.kind == "glx" and not display:
        raise XrUnavailableError("the glx binding needs an X display (DISPLAY is unset)")
    missing = [name for name in required_extensions(choice.kind) if name not in offered]
    if missing:
        raise XrUnavailableError(f"OpenXR runtime lacks {', '.join(missing)} (needed by the {choice.kind} binding)")
    return choice
