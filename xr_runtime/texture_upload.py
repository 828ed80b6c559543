"""Avatar textures into GL, once per new texture: host upload or CUDA-GL interop.

* Host (numpy) textures: glTexSubImage2D of RGBA8 into the avatar's RGBA8 storage — the fastest
  host path measured on llvmpipe (FACTS.md). A texture of another size goes through the
  renderer's own `set_texture` path instead (it reallocates the storage).
* CUDA tensors: all avatars' textures of a frame are copied through one `CudaGLTextures.copy`
  (one map / unmap for all), on the producer's stream, on this (the GL) thread. Registration
  happens the first time a CUDA texture arrives for an avatar. If interop is unavailable (no
  CUDA driver, Mesa GL, registration refused) the tensor is copied to the host and uploaded;
  the reason is logged once and reported in the stats.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from xr_runtime.avatar_state import is_cuda_tensor
from xr_runtime.gl_platform import select_egl_platform

select_egl_platform()

from OpenGL import GL  # noqa: E402

log = logging.getLogger(__name__)


@dataclass
class UploadCounters:
    host: int = 0
    cuda: int = 0
    cuda_to_host: int = 0        # CUDA tensors that took the host path (fallback)
    reallocations: int = 0
    skipped: int = 0             # same texture as last frame
    interop_disabled: str = ""   # why the GPU path is off ("" = not tried or working)
    paths: dict = field(default_factory=dict)


def _on_stream(stream: int | None, device):
    """Run torch work on the producer's stream (ordered after its writes), or the current one."""
    import contextlib

    import torch

    if not stream:
        return contextlib.nullcontext()
    return torch.cuda.stream(torch.cuda.ExternalStream(stream, device=device))


def _contiguous_on(tensor, stream: int | None):
    if tensor.is_contiguous():
        return tensor
    with _on_stream(stream, tensor.device):
        return tensor.contiguous()


def _to_host(tensor, stream: int | None) -> np.ndarray:
    with _on_stream(stream, tensor.device):
        return tensor.detach().cpu().numpy()


class TextureUploader:
    def __init__(self, renderer, allow_interop: bool = True) -> None:
        self.renderer = renderer
        self.counters = UploadCounters()
        self._keys: dict[int, tuple] = {}         # avatar id → key of the uploaded texture
        self._allow_interop = allow_interop
        self._interop = None                      # CudaGLTextures, created lazily
        self._slots: dict[int, tuple[int, int]] = {}  # avatar id → (slot, GL texture name)

    def needs_upload(self, handle, key: tuple) -> bool:
        return self._keys.get(handle.id) != key

    def upload(self, items) -> dict[int, np.ndarray]:
        """Upload `(handle, texture, key, cuda_stream)` items whose key changed.

        Returns {avatar id: host texture} for textures the renderer must take itself (size change);
        pass them as `AvatarDrawState.texture` on the first eye.
        """
        passthrough: dict[int, np.ndarray] = {}
        cuda_batch: dict[int, tuple] = {}
        for handle, texture, key, stream in items:
            if texture is None or not self.needs_upload(handle, key):
                self.counters.skipped += texture is not None
                continue
            if is_cuda_tensor(texture):
                slot = self._cuda_slot(handle, texture)
                if slot is not None:
                    texture = _contiguous_on(texture, stream)
                    cuda_batch.setdefault(stream or 0, {})[handle.id] = (slot, handle, texture, key)
                    continue
                texture = _to_host(texture, stream)
                self.counters.cuda_to_host += 1
            if not self._host_upload(handle, texture):
                passthrough[handle.id] = np.ascontiguousarray(texture)
                self.counters.reallocations += 1
            self._keys[handle.id] = key
        for stream, batch in cuda_batch.items():
            self._cuda_copy(stream, batch, passthrough)
        return passthrough

    def _host_upload(self, handle, texture: np.ndarray) -> bool:
        storage = self.renderer.avatar_texture(handle)
        if storage is None or (storage[1], storage[2]) != texture.shape[:2]:
            return False
        data = np.ascontiguousarray(texture)
        GL.glBindTexture(GL.GL_TEXTURE_2D, storage[0])
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, data.shape[1], data.shape[0],
                           GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, data)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self.renderer.avatar_texture_written(handle)
        self.counters.host += 1
        return True

    def _disable_interop(self, reason: str) -> None:
        if not self.counters.interop_disabled:
            log.warning("CUDA-GL interop off, uploading through the host instead: %s", reason)
        self.counters.interop_disabled = reason
        self._allow_interop = False

    def _cuda_slot(self, handle, tensor) -> int | None:
        if not self._allow_interop:
            return None
        from xr_runtime.cuda_gl_interop import InteropUnavailable, try_create

        storage = self.renderer.avatar_texture(handle)
        if storage is None:
            self._disable_interop("the GL texture has no RGBA8 storage view (GL < 4.3)")
            return None
        name, height, width = storage
        if (height, width) != tuple(tensor.shape[:2]):
            return None  # size change: host path reallocates; registration follows next time
        known = self._slots.get(handle.id)
        if known is not None and known[1] == name:
            return known[0]
        try:
            if self._interop is None:
                self._interop = try_create()
                if self._interop is None:
                    self._disable_interop("CUDA is not available to this process")
                    return None
            slot = self._interop.register(name, width, height)
        except InteropUnavailable as exc:
            self._disable_interop(str(exc))
            return None
        self._slots[handle.id] = (slot, name)
        return slot

    def _cuda_copy(self, stream: int, batch: dict, passthrough: dict) -> None:
        from xr_runtime.cuda_gl_interop import InteropUnavailable

        try:
            self._interop.copy({slot: tensor for slot, _, tensor, _ in batch.values()}, stream)
        except (InteropUnavailable, ValueError) as exc:
            if isinstance(exc, InteropUnavailable):
                self._disable_interop(str(exc))
            else:  # this frame's tensors did not fit: host path for them, interop stays on
                log.warning("CUDA texture refused by interop, uploaded through the host: %s", exc)
            for slot, handle, tensor, key in batch.values():
                host = _to_host(tensor, stream)
                if not self._host_upload(handle, host):
                    passthrough[handle.id] = host
                self._keys[handle.id] = key
                self.counters.cuda_to_host += 1
            return
        for slot, handle, tensor, key in batch.values():
            self.renderer.avatar_texture_written(handle)
            self._keys[handle.id] = key
            self.counters.cuda += 1

    def forget(self, handle) -> None:
        self._keys.pop(handle.id, None)

    def close(self) -> None:
        if self._interop is not None:
            self._interop.close()
            self._interop = None
