"""A framebuffer's colour into host memory without stalling the frame loop.

`start(target)` issues glReadPixels into a pixel pack buffer and drops a fence behind it; it
returns at once on a GPU (the copy runs after the frame's draws). `collect()`, called on a later
frame, maps the buffers whose fence has signalled (glClientWaitSync with a zero timeout: never
waits) and copies them out. A plain glReadPixels into client memory would instead wait for the
whole frame to finish rendering — on a headset at 90 Hz that wait is the frame budget.

A small ring of buffers bounds the work in flight: when every buffer is still pending (a slow
consumer, a slow GPU) `start` declines and the caller simply skips that frame. Rows come back
bottom-up, as GL stores them; consumers flip them on their own thread.
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from OpenGL import GL


@dataclass
class _Slot:
    pbo: int
    capacity: int = 0
    fence: Any = None
    width: int = 0
    height: int = 0
    meta: Any = None


@dataclass
class ReadbackCounters:
    started: int = 0
    collected: int = 0
    declined: int = 0           # every buffer still in flight: frame skipped


@dataclass
class AsyncReadback:
    buffers: int = 3
    counters: ReadbackCounters = field(default_factory=ReadbackCounters)

    def __post_init__(self) -> None:
        self._slots: list[_Slot] = []

    def _free_slot(self) -> _Slot | None:
        if not self._slots:
            self._slots = [_Slot(int(pbo)) for pbo in np.atleast_1d(GL.glGenBuffers(self.buffers))]
        for slot in self._slots:
            if slot.fence is None:
                return slot
        return None

    def start(self, target, meta: Any = None) -> bool:
        """Queues a copy of `target`'s resolved colour (RGBA8); False when no buffer is free."""
        slot = self._free_slot()
        if slot is None:
            self.counters.declined += 1
            return False
        w, h = target.width, target.height
        size = w * h * 4
        GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, slot.pbo)
        if slot.capacity != size:
            GL.glBufferData(GL.GL_PIXEL_PACK_BUFFER, size, None, GL.GL_STREAM_READ)
            slot.capacity = size
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, target.resolve_fbo)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
        GL.glReadPixels(0, 0, w, h, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, ctypes.c_void_p(0))
        GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, 0)
        GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)
        slot.fence = GL.glFenceSync(GL.GL_SYNC_GPU_COMMANDS_COMPLETE, 0)
        GL.glFlush()  # the fence must reach the GPU, or a zero-timeout wait never sees it signal
        slot.width, slot.height, slot.meta = w, h, meta
        self.counters.started += 1
        return True

    def collect(self) -> list[tuple[np.ndarray, Any]]:
        """(bottom-up (H, W, 4) uint8 image, meta) of every finished copy, oldest first."""
        done = []
        for slot in sorted((s for s in self._slots if s.fence is not None), key=lambda s: self._order(s)):
            status = GL.glClientWaitSync(slot.fence, 0, 0)
            if status not in (GL.GL_ALREADY_SIGNALED, GL.GL_CONDITION_SATISFIED):
                continue
            GL.glDeleteSync(slot.fence)
            slot.fence = None
            GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, slot.pbo)
            size = slot.width * slot.height * 4
            ptr = GL.glMapBufferRange(GL.GL_PIXEL_PACK_BUFFER, 0, size, GL.GL_MAP_READ_BIT)
            try:
                image = np.ctypeslib.as_array(ctypes.cast(ptr, ctypes.POINTER(ctypes.c_uint8)), shape=(size,)).copy()
            finally:
                GL.glUnmapBuffer(GL.GL_PIXEL_PACK_BUFFER)
                GL.glBindBuffer(GL.GL_PIXEL_PACK_BUFFER, 0)
            done.append((image.reshape(slot.height, slot.width, 4), slot.meta))
            slot.meta = None
            self.counters.collected += 1
        return done

    def _order(self, slot: _Slot) -> int:
        return getattr(slot.meta, "index", 0)

    def close(self) -> None:
        """Deletes fences and buffers; the GL context must be current."""
        for slot in self._slots:
            if slot.fence is not None:
                GL.glDeleteSync(slot.fence)
        if self._slots:
            GL.glDeleteBuffers(len(self._slots), [s.pbo for s in self._slots])
        self._slots = []
