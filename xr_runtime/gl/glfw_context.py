"""An OpenGL core context from a GLFW window with the platform's native context API (GLX on X11,
WGL on Windows), hidden until `show()`. For the OpenXR GLX and Win32 bindings, which need a
window-system context; the window itself can then be the mirror (same context, no copies).

GLFW is process-global (init/terminate); this object initialises it and terminates it on
`close()`, so it must not live beside another GLFW user in the same process (the EGL mirror
window and the desktop backend are the others; neither runs together with this one).
"""
from __future__ import annotations

import logging
import sys
import warnings
from dataclasses import dataclass

from OpenGL import GL

from core.errors import BackendUnavailable
from xr_runtime.gl.platform import use_platform

log = logging.getLogger(__name__)


class GlfwContextError(BackendUnavailable):
    """GLFW missing, no display, or no OpenGL >= 3.3 core window; the message says which."""


@dataclass(frozen=True)
class GlfwContextConfig:
    width: int = 640            # the window's size once shown (mirror)
    height: int = 360
    title: str = "headcast"
    major: int = 4              # tried from here down to 3.3
    minor: int = 5
    debug: bool = False


def _uses_glx() -> bool:
    return sys.platform.startswith("linux")


class GlfwGLContext:
    """A hidden GLFW window whose context is current on the creating thread until `close()`."""

    def __init__(self, config: GlfwContextConfig | None = None) -> None:
        self.config = config or GlfwContextConfig()
        try:
            import glfw
        except Exception as exc:  # the wheel ships libglfw; a broken install lands here
            raise GlfwContextError(f"GLFW not importable: {exc}") from exc
        self._glfw = glfw
        if _uses_glx() and hasattr(glfw, "PLATFORM"):
            # GLFW 3.4 prefers Wayland when both exist; a GLX context needs its X11 platform.
            glfw.init_hint(glfw.PLATFORM, glfw.PLATFORM_X11)
        with warnings.catch_warnings(record=True) as caught:  # GLFW reports errors as warnings
            warnings.simplefilter("always")
            ok = glfw.init()
        if not ok:
            why = "; ".join(str(w.message) for w in caught) or "no display?"
            raise GlfwContextError(f"glfwInit failed ({why})")
        try:
            self.window, self.gl_version = self._create_window()
        except BaseException:
            glfw.terminate()
            raise
        self.make_current()
        glfw.swap_interval(0)  # a mirror's vsync must never pace the headset
        self.renderer = (GL.glGetString(GL.GL_RENDERER) or b"?").decode()
        self.visible = False
        log.info("GLFW %s window context, OpenGL %d.%d core on %s",
                 "GLX" if _uses_glx() else "WGL", *self.gl_version, self.renderer)

    def _create_window(self):
        glfw, c = self._glfw, self.config
        versions = [(c.major, c.minor)]
        versions += [v for v in ((4, 6), (4, 5), (4, 3), (4, 1), (3, 3)) if v < versions[0]]
        errors = []
        for major, minor in versions:
            glfw.default_window_hints()
            glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.NATIVE_CONTEXT_API)
            glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, major)
            glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, minor)
            glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
            glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
            glfw.window_hint(glfw.OPENGL_DEBUG_CONTEXT, c.debug)
            glfw.window_hint(glfw.VISIBLE, False)
            glfw.window_hint(glfw.DOUBLEBUFFER, True)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                window = glfw.create_window(c.width, c.height, c.title, None, None)
            if window:
                return window, (major, minor)
            errors += [str(w.message) for w in caught]
        raise GlfwContextError(f"no OpenGL >= 3.3 core window: {'; '.join(errors[-2:]) or 'unknown error'}")

    def make_current(self) -> None:
        if _uses_glx():
            use_platform("glx")  # PyOpenGL must resolve through GLX for a GLX context (gl_platform)
        self._glfw.make_context_current(self.window)

    def release_current(self) -> None:
        self._glfw.make_context_current(None)

    def show(self, title: str | None = None) -> None:
        """Map the window (mirror); it keeps the size it was created with."""
        if title:
            self._glfw.set_window_title(self.window, title)
        self._glfw.show_window(self.window)
        self.visible = True

    def framebuffer_size(self) -> tuple[int, int]:
        return tuple(self._glfw.get_framebuffer_size(self.window))

    def swap_buffers(self) -> None:
        self._glfw.swap_buffers(self.window)

    def poll(self) -> bool:
        """Process window events; False once the user asked to close the window."""
        self._glfw.poll_events()
        return not self._glfw.window_should_close(self.window)

    def close(self) -> None:
        if self.window is None:
            return
        self._glfw.destroy_window(self.window)
        self.window = None
        self._glfw.terminate()

    def __enter__(self) -> "GlfwGLContext":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
