"""The mirror for window-system bindings (GLX, WGL): the session's own GLFW window shows the left eye.

The session's context *is* this window's context, so the eye image is blitted straight from the
eye's framebuffer into the window's back buffer — no readback, no second context, no upload —
and the buffers swap (swap interval 0: the window never paces the headset). Everything happens
in the one context the runtime expects current, so nothing needs restoring; the `restore`
arguments exist only to match `MirrorWindow` (the EGL path, backends/mirror.py).
"""
from __future__ import annotations

import logging
from typing import Callable

import numpy as np
from OpenGL import GL

log = logging.getLogger(__name__)


class SameContextMirror:
    kind = "same-context"

    def __init__(self, window, title: str = "headcast mirror", every: int = 1) -> None:
        """`window`: the session's GlfwGLContext."""
        self.window = window
        self.title, self.every = title, max(1, every)
        self._frames = 0
        self._drawn = False
        self.presented = 0
        self._capture_requested = False
        self.captured: np.ndarray | None = None

    def open(self, restore: Callable[[], None] | None = None) -> None:
        self.window.show(self.title)

    def capture(self, target) -> None:
        """Blit `target`'s colour, scaled, into the window's back buffer (before the image is released)."""
        self._frames += 1
        if (self._frames - 1) % self.every:
            return
        fb_w, fb_h = self.window.framebuffer_size()
        if fb_w == 0 or fb_h == 0:  # minimised
            return
        target.resolve()
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, target.resolve_fbo)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, 0)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)  # copy the sRGB bytes as they are
        GL.glBlitFramebuffer(0, 0, target.width, target.height, 0, 0, fb_w, fb_h,
                             GL.GL_COLOR_BUFFER_BIT, GL.GL_LINEAR)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        self._drawn = True

    def present(self, restore: Callable[[], None] | None = None) -> bool:
        """Swap if something was drawn; returns False when the user closed the window."""
        if self._drawn:
            if self._capture_requested:
                self.captured = self._read_back_buffer()
                self._capture_requested = False
            self.window.swap_buffers()
            self.presented += 1
            self._drawn = False
        return self.window.poll()

    def _read_back_buffer(self) -> np.ndarray:
        from xr_runtime.gl.target import read_back_buffer

        return read_back_buffer(*self.window.framebuffer_size())

    def request_capture(self) -> None:
        """Keep the next presented window image (top row first) in `captured` (tests)."""
        self._capture_requested = True

    def close(self, restore: Callable[[], None] | None = None) -> None:
        """The window belongs to the session's graphics and closes with it."""
