"""Framebuffers to render into: our own (tests, headless output) or OpenXR swapchain images.

Colour is always an sRGB format (GL_SRGB8_ALPHA8): shaders write linear light and, with
GL_FRAMEBUFFER_SRGB enabled, GL encodes on write and blends in linear space.
"""
from __future__ import annotations

import numpy as np
from OpenGL import GL

from core.errors import BackendUnavailable


class FramebufferError(BackendUnavailable):
    pass


def _check_complete(what: str) -> None:
    status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
    if status != GL.GL_FRAMEBUFFER_COMPLETE:
        raise FramebufferError(f"{what} framebuffer incomplete (0x{int(status):04x})")


class RenderTarget:
    """An FBO with an sRGB colour texture and a depth attachment, optionally multisampled.

    With `samples > 0` drawing goes to multisample renderbuffers and `resolve()` blits them into
    the single-sample colour texture (and depth texture, if one was given) that is read or
    submitted. Pass `color_texture` / `depth_texture` to wrap existing textures (swapchain images);
    those are not deleted by `delete()`.
    """

    def __init__(self, width: int, height: int, *, samples: int = 0,
                 color_texture: int | None = None, depth_texture: int | None = None,
                 depth_format: int = GL.GL_DEPTH_COMPONENT24) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"bad size {width}x{height}")
        self.width, self.height, self.samples = width, height, samples
        # Resolving depth by blit needs equal formats, so the multisample depth buffer copies the
        # depth texture's format (OpenXR runtimes often hand out GL_DEPTH24_STENCIL8).
        self.depth_format = depth_format
        self._owned_textures: list[int] = []
        self._renderbuffers: list[int] = []
        if color_texture is None:
            color_texture = int(GL.glGenTextures(1))
            GL.glBindTexture(GL.GL_TEXTURE_2D, color_texture)
            GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_SRGB8_ALPHA8, width, height)
            GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR)
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
            self._owned_textures.append(color_texture)
        self.color_texture = color_texture
        self.depth_texture = depth_texture

        self.resolve_fbo = int(GL.glGenFramebuffers(1))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.resolve_fbo)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D,
                                  color_texture, 0)
        if depth_texture is not None:
            has_stencil = depth_format in (GL.GL_DEPTH24_STENCIL8, GL.GL_DEPTH32F_STENCIL8)
            attachment = GL.GL_DEPTH_STENCIL_ATTACHMENT if has_stencil else GL.GL_DEPTH_ATTACHMENT
            GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, attachment, GL.GL_TEXTURE_2D, depth_texture, 0)
        elif samples == 0:
            self._attach_depth_renderbuffer(0)
        _check_complete("resolve")

        self.draw_fbo = self.resolve_fbo
        if samples > 0:
            self.draw_fbo = int(GL.glGenFramebuffers(1))
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.draw_fbo)
            color_rb = int(GL.glGenRenderbuffers(1))
            GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, color_rb)
            GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, GL.GL_SRGB8_ALPHA8,
                                                width, height)
            GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0,
                                         GL.GL_RENDERBUFFER, color_rb)
            self._renderbuffers.append(color_rb)
            self._attach_depth_renderbuffer(samples)
            _check_complete(f"{samples}x multisample")
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    def _attach_depth_renderbuffer(self, samples: int) -> None:
        rb = int(GL.glGenRenderbuffers(1))
        GL.glBindRenderbuffer(GL.GL_RENDERBUFFER, rb)
        GL.glRenderbufferStorageMultisample(GL.GL_RENDERBUFFER, samples, self.depth_format,
                                            self.width, self.height)
        has_stencil = self.depth_format in (GL.GL_DEPTH24_STENCIL8, GL.GL_DEPTH32F_STENCIL8)
        attachment = GL.GL_DEPTH_STENCIL_ATTACHMENT if has_stencil else GL.GL_DEPTH_ATTACHMENT
        GL.glFramebufferRenderbuffer(GL.GL_FRAMEBUFFER, attachment, GL.GL_RENDERBUFFER, rb)
        self._renderbuffers.append(rb)

    def bind(self) -> None:
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.draw_fbo)
        GL.glViewport(0, 0, self.width, self.height)

    def resolve(self) -> None:
        """Multisample → colour texture (and depth texture). A no-op without multisampling."""
        if self.draw_fbo == self.resolve_fbo:
            return
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.draw_fbo)
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, self.resolve_fbo)
        mask = GL.GL_COLOR_BUFFER_BIT
        if self.depth_texture is not None:
            mask |= GL.GL_DEPTH_BUFFER_BIT
        GL.glBlitFramebuffer(0, 0, self.width, self.height, 0, 0, self.width, self.height,
                             mask, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)

    def read_rgba(self) -> np.ndarray:
        """The colour texture's bytes as (height, width, 4) uint8, top row first (image order)."""
        self.resolve()
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, self.resolve_fbo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        data = GL.glReadPixels(0, 0, self.width, self.height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        image = np.frombuffer(data, dtype=np.uint8).reshape(self.height, self.width, 4)
        return image[::-1].copy()  # GL's row 0 is the bottom row

    def read_depth(self) -> np.ndarray:
        """Window-space depth in [0, 1] as (height, width) float32, top row first.

        Reads the resolved depth texture when there is one, else the draw framebuffer's depth.
        """
        self.resolve()
        source = self.resolve_fbo if self.depth_texture is not None or self.samples == 0 else self.draw_fbo
        if source == self.draw_fbo and self.samples > 0:
            raise FramebufferError("multisample depth without a depth texture cannot be read back")
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, source)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 4)
        data = GL.glReadPixels(0, 0, self.width, self.height, GL.GL_DEPTH_COMPONENT, GL.GL_FLOAT)
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        depth = np.frombuffer(data, dtype=np.float32).reshape(self.height, self.width)
        return depth[::-1].copy()

    def delete(self) -> None:
        fbos = {self.draw_fbo, self.resolve_fbo}
        GL.glDeleteFramebuffers(len(fbos), list(fbos))
        if self._renderbuffers:
            GL.glDeleteRenderbuffers(len(self._renderbuffers), self._renderbuffers)
        if self._owned_textures:
            GL.glDeleteTextures(self._owned_textures)
        self._renderbuffers, self._owned_textures = [], []


def read_back_buffer(width: int, height: int) -> np.ndarray:
    """The current window's back buffer as (height, width, 4) uint8, top row first. Read it before
    the swap: afterwards its contents are undefined (Mesa under Xvfb returns zeros)."""
    GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
    GL.glReadBuffer(GL.GL_BACK)
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
    data = GL.glReadPixels(0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
    return np.frombuffer(data, np.uint8).reshape(height, width, 4)[::-1].copy()
