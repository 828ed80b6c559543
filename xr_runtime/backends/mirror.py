"""A desktop window mirroring one eye of frames rendered in another GL context (OpenXR's EGL one).
(With the GLX/WGL bindings the session's own window mirrors instead: window_mirror.py.)

The OpenXR session's context is a surfaceless EGL context, which cannot share objects with a
window's context. So the mirror copies through the host, small: the eye image is blitted (scaled)
into a mirror-sized target in the session's context and read back (at 640×360 that is ~1 MB),
then the window's context is made current, the pixels go into a texture there, are blitted to the
window, the buffers swap, and the session's context is made current again — all before the frame
is submitted, since the runtime expects its context current in xrEndFrame. GLFW creates the
window's context through EGL too (`EGL_CONTEXT_API`), so PyOpenGL stays on its EGL platform.
Costs roughly one readback of the mirror size per frame; `every` mirrors only every n-th frame.
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from OpenGL import GL

from core.errors import BackendUnavailable

log = logging.getLogger(__name__)


class MirrorUnavailable(BackendUnavailable):
    pass


class MirrorWindow:
    kind = "host-copy"

    def __init__(self, width: int = 640, height: int = 360, title: str = "headcast mirror", every: int = 1) -> None:
        self.width, self.height, self.title, self.every = width, height, title, max(1, every)
        self.window = None
        self._glfw = None
        self._small = None           # RenderTarget in the source context
        self._pixels: np.ndarray | None = None
        self._texture = self._fbo = 0
        self._frames = 0
        self.presented = 0
        self._capture_requested = False
        self.captured: np.ndarray | None = None

    def open(self, restore: Callable[[], None]) -> None:
        """Create the window; `restore` makes the source context current again afterwards."""
        try:
            import glfw
        except Exception as exc:
            raise MirrorUnavailable(f"GLFW not importable: {exc}") from exc
        import warnings

        with warnings.catch_warnings(record=True) as caught:  # GLFW reports its errors as warnings
            warnings.simplefilter("always")
            ok = glfw.init()
        if not ok:
            why = "; ".join(str(w.message) for w in caught) or "no display?"
            raise MirrorUnavailable(f"glfwInit failed ({why})")
        self._glfw = glfw
        glfw.window_hint(glfw.CONTEXT_CREATION_API, glfw.EGL_CONTEXT_API)
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        self.window = glfw.create_window(self.width, self.height, self.title, None, None)
        if not self.window:
            glfw.terminate()
            self._glfw = None
            raise MirrorUnavailable("could not create a mirror window")
        glfw.make_context_current(self.window)
        glfw.swap_interval(0)  # never let the mirror's vsync pace the headset
        self._texture = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self._texture)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_RGBA8, self.width, self.height)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self._fbo = int(GL.glGenFramebuffers(1))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self._fbo)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, self._texture, 0)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        restore()

    def capture(self, target) -> None:
        """In the source context: scale `target`'s colour into the mirror size and read it back."""
        self._frames += 1
        if self.window is None or (self._frames - 1) % self.every:
            return
        from xr_runtime.gl.target import RenderTarget

        if self._small is None:
            self._small = RenderTarget(self.width, self.height)
        target.resolve()
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, target.resolve_fbo)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self._small.resolve_fbo)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)  # copy the sRGB bytes as they are
        GL.glBlitFramebuffer(0, 0, target.width, target.height, 0, 0, self.width, self.height,
                             GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        self._pixels = self._small.read_rgba()

    def present(self, restore: Callable[[], None]) -> bool:
        """Show the last capture; returns False when the user closed the window."""
        if self.window is None:
            return True
        glfw = self._glfw
        if self._pixels is not None:
            glfw.make_context_current(self.window)
            try:
                fb_w, fb_h = glfw.get_framebuffer_size(self.window)
                GL.glBindTexture(GL.GL_TEXTURE_2D, self._texture)
                GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
                GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, self.width, self.height, GL.GL_RGBA,
                                   GL.GL_UNSIGNED_BYTE, np.ascontiguousarray(self._pixels[::-1]))  # GL rows: bottom first
                GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
                GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self._fbo)
                GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, 0)
                GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, fb_w, fb_h,
                                     GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
                if self._capture_requested:
                    from xr_runtime.gl.target import read_back_buffer

                    self.captured = read_back_buffer(fb_w, fb_h)
                    self._capture_requested = False
                GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
                glfw.swap_buffers(self.window)
                self.presented += 1
                self._pixels = None
            finally:
                restore()
        glfw.poll_events()
        return not glfw.window_should_close(self.window)

    def request_capture(self) -> None:
        """Keep the next presented window image (top row first) in `captured` (tests)."""
        self._capture_requested = True

    def close(self, restore: Callable[[], None]) -> None:
        if self._small is not None:
            self._small.delete()  # source context is current here
            self._small = None
        if self.window is not None:
            self._glfw.make_context_current(self.window)
            GL.glDeleteFramebuffers(1, [self._fbo])
            GL.glDeleteTextures([self._texture])
            self._glfw.destroy_window(self.window)
            self.window = None
            self._glfw.terminate()
            restore()
