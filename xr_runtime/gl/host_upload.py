"""Host memory → RGBA8 texture: two ways, and a start-up calibration that keeps the faster one.

* ``direct`` — glTexSubImage2D from client memory. The driver copies the bytes before the call
  returns. Fastest on Mesa llvmpipe (FACTS.md: 0.05 ms at 512², 0.2 ms at 1024²), where
  "GPU memory" is host memory anyway.
* ``pbo`` — memcpy into a mapped pixel unpack buffer, then glTexSubImage2D from that buffer. On
  discrete GPUs (NVIDIA) the copy into the texture becomes a DMA from driver memory that runs
  asynchronously, so the render thread only pays the memcpy. Never stalls: each upload orphans
  its buffer (glBufferData with NULL: the driver hands out fresh storage if the old one is still
  being read) and maps it with MAP_INVALIDATE_BUFFER, and two buffers alternate so a frame never
  re-specifies the buffer the previous frame's transfer may still be reading.

Which one wins depends on the driver, the bus and the texture size, so `calibrate` measures both
on the actual context at the actual size: a few rounds of back-to-back uploads into a scratch
texture, each round closed by one glFinish (the GPU side of the copy counts too), alternating the
order, median per method. A few milliseconds, once per texture size, before the frame loop.
"""
from __future__ import annotations

import ctypes
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
from OpenGL import GL
from OpenGL.raw.GL.VERSION.GL_1_1 import glTexSubImage2D as raw_tex_sub_image_2d

log = logging.getLogger(__name__)

Method = Literal["direct", "pbo"]
METHODS: tuple[Method, ...] = ("direct", "pbo")


def _check_image(data: np.ndarray) -> np.ndarray:
    if data.dtype != np.uint8 or data.ndim != 3 or data.shape[2] != 4:
        raise ValueError(f"expected (H, W, 4) uint8, got {data.shape} {data.dtype}")
    return np.ascontiguousarray(data)


class DirectUpload:
    name: Method = "direct"

    def upload(self, texture: int, data: np.ndarray) -> None:
        data = _check_image(data)
        GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, data.shape[1], data.shape[0],
                           GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, data)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def close(self) -> None:
        pass


class PboUpload:
    """Uploads through `count` alternating pixel unpack buffers (see the module notes)."""

    name: Method = "pbo"

    def __init__(self, count: int = 2) -> None:
        if count < 1:
            raise ValueError("need at least one buffer")
        self._buffers = [int(b) for b in np.atleast_1d(GL.glGenBuffers(count))]
        self._next = 0
        self.uploads = 0
        self.fallbacks = 0           # uploads that took the direct path (unmap reported corruption)

    def upload(self, texture: int, data: np.ndarray) -> None:
        data = _check_image(data)
        height, width = data.shape[:2]
        buffer = self._buffers[self._next]
        self._next = (self._next + 1) % len(self._buffers)
        GL.glBindBuffer(GL.GL_PIXEL_UNPACK_BUFFER, buffer)
        try:
            GL.glBufferData(GL.GL_PIXEL_UNPACK_BUFFER, data.nbytes, None, GL.GL_STREAM_DRAW)  # orphan
            pointer = GL.glMapBufferRange(GL.GL_PIXEL_UNPACK_BUFFER, 0, data.nbytes,
                                          GL.GL_MAP_WRITE_BIT | GL.GL_MAP_INVALIDATE_BUFFER_BIT)
            if not pointer:
                raise RuntimeError("glMapBufferRange returned NULL")
            ctypes.memmove(pointer, data.ctypes.data, data.nbytes)
            intact = GL.glUnmapBuffer(GL.GL_PIXEL_UNPACK_BUFFER)
            if intact:
                GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
                GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
                # With a buffer bound the last argument is an offset into it, not a pointer.
                raw_tex_sub_image_2d(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, GL.GL_RGBA,
                                     GL.GL_UNSIGNED_BYTE, ctypes.c_void_p(0))
                GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        finally:
            GL.glBindBuffer(GL.GL_PIXEL_UNPACK_BUFFER, 0)
        if not intact:
            # The spec allows the store to be lost (e.g. a mode switch) while mapped: upload again.
            self.fallbacks += 1
            DirectUpload().upload(texture, data)
        self.uploads += 1

    def close(self) -> None:
        if self._buffers:
            GL.glDeleteBuffers(len(self._buffers), self._buffers)
            self._buffers = []


def make_method(name: Method):
    if name == "direct":
        return DirectUpload()
    if name == "pbo":
        return PboUpload()
    raise ValueError(f"unknown upload method {name!r} (direct, pbo)")


@dataclass(frozen=True)
class Calibration:
    width: int
    height: int
    times_ms: dict[str, float]      # median per upload, GPU side included
    choice: Method

    def as_dict(self) -> dict:
        return {"size": [self.width, self.height], "ms": dict(self.times_ms), "choice": self.choice}


def calibrate(methods: dict[str, object], width: int, height: int, rounds: int = 5,
              uploads_per_round: int = 4, seed: int = 0) -> Calibration:
    """Time each method on this context at this size; the current GL context is used."""
    rng = np.random.default_rng(seed)
    images = [rng.integers(0, 256, (height, width, 4), dtype=np.uint8) for _ in range(uploads_per_round)]
    scratch = int(GL.glGenTextures(1))
    GL.glBindTexture(GL.GL_TEXTURE_2D, scratch)
    GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_RGBA8, width, height)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    samples: dict[str, list[float]] = {name: [] for name in methods}
    try:
        for name, method in methods.items():      # warm-up: first-use allocations are not the steady state
            method.upload(scratch, images[0])
        GL.glFinish()
        order = list(methods)
        for round_index in range(rounds):
            for name in (order if round_index % 2 == 0 else order[::-1]):
                method = methods[name]
                t0 = time.perf_counter()
                for image in images:
                    method.upload(scratch, image)
                GL.glFinish()
                samples[name].append((time.perf_counter() - t0) * 1e3 / len(images))
    finally:
        GL.glDeleteTextures([scratch])
    times = {name: statistics.median(values) for name, values in samples.items()}
    choice = min(times, key=times.get)
    return Calibration(width, height, times, choice)
