"""One eye's OpenXR swapchains (sRGB colour + optional depth) and framebuffers for their images."""
from __future__ import annotations

import logging
from types import ModuleType

from xr_runtime.gl.target import RenderTarget

log = logging.getLogger(__name__)

# GL internal formats as OpenXR's GL binding reports them (int64 in xrEnumerateSwapchainFormats).
GL_SRGB8_ALPHA8 = 0x8C43
GL_RGBA8 = 0x8058
GL_DEPTH_COMPONENT24 = 0x81A6
GL_DEPTH24_STENCIL8 = 0x88F0
GL_DEPTH_COMPONENT32F = 0x8CAC
GL_DEPTH_COMPONENT16 = 0x81A5
GL_DEPTH32F_STENCIL8 = 0x8CAD

COLOR_PREFERENCE = (GL_SRGB8_ALPHA8, GL_RGBA8)
DEPTH_PREFERENCE = (GL_DEPTH_COMPONENT24, GL_DEPTH24_STENCIL8, GL_DEPTH_COMPONENT32F,
                    GL_DEPTH32F_STENCIL8, GL_DEPTH_COMPONENT16)


def pick_format(offered: list[int], preference: tuple[int, ...]) -> int | None:
    """The first preferred format the runtime offers, or None."""
    for fmt in preference:
        if fmt in offered:
            return fmt
    return None


class EyeSwapchain:
    """Colour (and depth) swapchain of one view; `acquire()` gives a RenderTarget on its images.

    Colour and depth images are acquired together; their indices may differ, so framebuffers are
    cached per (colour image, depth image) pair and built on first use.
    """

    def __init__(self, xr: ModuleType, session, width: int, height: int, color_format: int,
                 depth_format: int | None, samples: int = 0) -> None:
        self._xr = xr
        self.width, self.height, self.samples = width, height, samples
        self.color_format, self.depth_format = color_format, depth_format
        self.color = self._create(session, color_format,
                                  xr.SwapchainUsageFlags.COLOR_ATTACHMENT_BIT
                                  | xr.SwapchainUsageFlags.SAMPLED_BIT)
        self.color_images = self._images(self.color)
        self.depth = None
        self.depth_images: list[int] = []
        if depth_format is not None:
            self.depth = self._create(session, depth_format,
                                      xr.SwapchainUsageFlags.DEPTH_STENCIL_ATTACHMENT_BIT)
            self.depth_images = self._images(self.depth)
        self._targets: dict[tuple[int, int | None], RenderTarget] = {}
        self._acquired = False

    def _create(self, session, fmt: int, usage):
        xr = self._xr
        return xr.create_swapchain(session, xr.SwapchainCreateInfo(
            usage_flags=usage, format=fmt, sample_count=1, width=self.width, height=self.height,
            face_count=1, array_size=1, mip_count=1))

    def _images(self, swapchain) -> list[int]:
        images = self._xr.enumerate_swapchain_images(swapchain, self._xr.SwapchainImageOpenGLKHR)
        return [int(image.image) for image in images]

    def _acquire_one(self, swapchain) -> int:
        xr = self._xr
        index = xr.acquire_swapchain_image(swapchain, xr.SwapchainImageAcquireInfo())
        xr.wait_swapchain_image(swapchain, xr.SwapchainImageWaitInfo(timeout=xr.INFINITE_DURATION))
        return int(index)

    def acquire(self) -> RenderTarget:
        """Acquire and wait the next images; returns the framebuffer that draws into them."""
        color_index = self._acquire_one(self.color)
        depth_index = self._acquire_one(self.depth) if self.depth is not None else None
        self._acquired = True
        key = (color_index, depth_index)
        target = self._targets.get(key)
        if target is None:
            target = RenderTarget(
                self.width, self.height, samples=self.samples,
                color_texture=self.color_images[color_index],
                depth_texture=self.depth_images[depth_index] if depth_index is not None else None,
                depth_format=self.depth_format or GL_DEPTH_COMPONENT24)
            self._targets[key] = target
        return target

    def release(self) -> None:
        """Hand the images back to the runtime (after drawing, before xrEndFrame)."""
        if not self._acquired:
            return
        xr = self._xr
        self._acquired = False
        xr.release_swapchain_image(self.color, xr.SwapchainImageReleaseInfo())
        if self.depth is not None:
            xr.release_swapchain_image(self.depth, xr.SwapchainImageReleaseInfo())

    def sub_image(self, depth: bool = False):
        xr = self._xr
        sub = xr.SwapchainSubImage(swapchain=self.depth if depth else self.color)
        sub.image_rect.offset.x, sub.image_rect.offset.y = 0, 0
        sub.image_rect.extent.width, sub.image_rect.extent.height = self.width, self.height
        sub.image_array_index = 0
        return sub

    def destroy(self, gl_alive: bool = True) -> None:
        """Delete framebuffers (while the GL context lives) and the swapchains."""
        if gl_alive:
            for target in self._targets.values():
                target.delete()
        self._targets.clear()
        for swapchain in (self.color, self.depth):
            if swapchain is not None:
                try:
                    self._xr.destroy_swapchain(swapchain)
                except self._xr.ResultException as error:  # e.g. after instance loss
                    log.debug("destroy_swapchain: %s", error)
        self.color = self.depth = None
