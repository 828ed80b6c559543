"""Avatar textures into GL, once per new texture: host upload or CUDA-GL interop.

* Host (numpy) textures: into the avatar's RGBA8 storage, either directly (glTexSubImage2D from
  client memory, fastest on llvmpipe) or through double-buffered, orphaned pixel unpack buffers
  (expected to win on NVIDIA) — `host_upload`. With method "auto" each texture size is
  calibrated once on the actual context (`prepare`, before the frame loop) and the faster method
  is kept; the choice and the timings are logged and reported in the counters. A texture of
  another size goes through the renderer's own `set_texture` path instead (it reallocates).
* CUDA tensors: all avatars' textures of a frame are copied through one `CudaGLTextures.copy`
  (one map / unmap for all), on the producer's stream, on this (the GL) thread. Registration
  happens the first time a CUDA texture arrives for an avatar. If interop is unavailable (no
  CUDA driver, Mesa GL, registration refused) the tensor is copied to the host and uploaded;
  the reason is logged once and reported in the stats.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Iterable, Literal

import numpy as np

from xr_runtime.avatars.state import is_cuda_tensor
from xr_runtime.gl.host_upload import METHODS, calibrate, make_method

log = logging.getLogger(__name__)

HostMethod = Literal["auto", "direct", "pbo"]


@dataclass
class UploadCounters:
    host: int = 0
    cuda: int = 0
    cuda_to_host: int = 0        # CUDA tensors that took the host path (fallback)
    reallocations: int = 0
    skipped: int = 0             # same texture as last frame
    interop_disabled: str = ""   # why the GPU path is off ("" = not tried or working)
    paths: dict = field(default_factory=dict)
    host_pbo: int = 0            # host uploads that went through pixel buffers (part of `host`)
    host_methods: dict = field(default_factory=dict)   # "WxH" → "direct" | "pbo"
    calibration: dict = field(default_factory=dict)    # "WxH" → {"size", "ms": {method: ms}, "choice"}


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
    def __init__(self, renderer, allow_interop: bool = True, host_method: HostMethod = "auto") -> None:
        if host_method not in ("auto", *METHODS):
            raise ValueError(f"unknown host upload method {host_method!r} (auto, direct, pbo)")
        self.renderer = renderer
        self.counters = UploadCounters()
        self._host_method = host_method
        self._methods: dict[str, object] = {}     # method name → DirectUpload / PboUpload (GL objects)
        self._by_size: dict[tuple[int, int], str] = {}  # (height, width) → method name
        self._keys: dict[int, tuple] = {}         # avatar id → key of the uploaded texture
        self._allow_interop = allow_interop
        self._interop = None                      # CudaGLTextures, created lazily
        self._slots: dict[int, tuple[int, int]] = {}  # avatar id → (slot, GL texture name)

    def prepare(self, sizes: Iterable[tuple[int, int]]) -> None:
        """Pick the host method for these (height, width) texture sizes now, before the frame loop
        (calibrating on this context when the method is "auto"). Other sizes are picked on first use."""
        for height, width in sizes:
            self._method_for(int(height), int(width))

    def _method(self, name: str):
        if name not in self._methods:
            self._methods[name] = make_method(name)
        return self._methods[name]

    def _method_for(self, height: int, width: int):
        name = self._by_size.get((height, width))
        if name is None:
            label = f"{width}x{height}"
            if self._host_method == "auto":
                result = calibrate({m: self._method(m) for m in METHODS}, width, height)
                name = result.choice
                self.counters.calibration[label] = result.as_dict()
                log.info("texture upload at %s: %s (%s)", label, name,
                         ", ".join(f"{m} {ms:.3f} ms" for m, ms in result.times_ms.items()))
            else:
                name = self._host_method
            self._by_size[(height, width)] = name
            self.counters.host_methods[label] = name
        return self._method(name)

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
        method = self._method_for(storage[1], storage[2])
        method.upload(storage[0], np.ascontiguousarray(texture))
        self.renderer.avatar_texture_written(handle)
        self.counters.host += 1
        self.counters.host_pbo += method.name == "pbo"
        return True

    def _disable_interop(self, reason: str) -> None:
        if not self.counters.interop_disabled:
            log.warning("CUDA-GL interop off, uploading through the host instead: %s", reason)
        self.counters.interop_disabled = reason
        self._allow_interop = False

    def _cuda_slot(self, handle, tensor) -> int | None:
        if not self._allow_interop:
            return None
        from xr_runtime.gl.cuda_interop import InteropUnavailable, try_create

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
        from xr_runtime.gl.cuda_interop import InteropUnavailable

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
        """Delete the pixel buffers (the GL context must be current) and release interop."""
        for method in self._methods.values():
            method.close()
        self._methods = {}
        if self._interop is not None:
            self._interop.close()
            self._interop = None
