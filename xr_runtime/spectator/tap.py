"""Taking the spectator view out of the frame loop without slowing it.

    tap = SpectatorTap(eye=0, consumers=[web_feed, camera_feed])
    node = RenderNode(..., spectator=tap)

On the render thread the tap costs one cheap question per frame while nobody watches: does any
consumer want a frame now (someone connected, its rate cap allows one, its encoder is idle)? Only
then, right after the chosen eye is drawn — or, with a `FreeCamera`, after the frame was submitted,
into a target of the tap's own from the camera's pose (one extra draw, only for wanted frames) —
it queues an asynchronous readback of that view
(`gl/async_readback`: pixel pack buffer + fence) and, on a later frame, hands the finished image
to the consumers that asked. Consumers never block: `offer` drops the frame into a one-slot
mailbox that their own thread empties (`LatestFrame`), so a slow encoder or viewer only ever
loses frames; the frame loop never waits for it.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, Sequence

import numpy as np


@dataclass(frozen=True)
class SpectatorFrame:
    """One eye as drawn: RGBA8 rows bottom-up (GL order) — consumers flip on their own thread."""

    image_bottom_up: np.ndarray   # (H, W, 4) uint8
    index: int                    # render frame index
    display_ns: int               # the frame's predicted display time (time.monotonic_ns clock)
    grabbed_ns: int               # when the readback was queued (right after the eye was drawn)
    collected_ns: int = 0         # when it reached host memory

    def top_down(self) -> np.ndarray:
        return self.image_bottom_up[::-1]


class SpectatorConsumer(Protocol):
    def wants_frame(self, now_ns: int) -> bool: ...   # render thread: must be cheap
    def offer(self, frame: SpectatorFrame) -> None: ...  # render thread: must not block


@dataclass(frozen=True)
class FreeCamera:
    """A spectator view of its own, not an eye: from `position`, looking at `target` (scene metres)."""

    position: tuple[float, float, float]
    target: tuple[float, float, float]
    width: int = 640
    height: int = 480
    vertical_fov_deg: float = 50.0

    def view_projection(self) -> tuple[np.ndarray, np.ndarray]:
        from geometry import transforms

        view = transforms.look_at(self.position, self.target).astype(np.float32)
        projection = transforms.projection_symmetric(self.vertical_fov_deg, self.width / self.height, 0.05, 100.0)
        return view, projection.astype(np.float32)


@dataclass(frozen=True)
class _Meta:
    index: int
    display_ns: int
    grabbed_ns: int
    consumers: tuple


@dataclass
class TapCounters:
    grabbed: int = 0
    delivered: int = 0
    declined: int = 0             # no readback buffer free: frame skipped
    # Render-thread time spent queueing and collecting readbacks. On a software rasteriser this
    # includes waiting for the eye's rendering to finish (which the frame would wait for at submit).
    readback_ms_total: float = 0.0


class SpectatorTap:
    """`eye`: index of the view to show (0 = left or the only eye; clamped to the views drawn)."""

    def __init__(self, consumers: Sequence[SpectatorConsumer], eye: int = 0,
                 free_camera: FreeCamera | None = None) -> None:
        self.consumers = list(consumers)
        self.eye = eye
        self.free_camera = free_camera
        self._free_target = None
        self.counters = TapCounters()
        self._readback = None
        self._max_eye = 0          # highest eye index drawn so far (mono backends draw only 0)

    def setup_gl(self) -> None:
        from xr_runtime.gl.async_readback import AsyncReadback

        self._readback = AsyncReadback()
        if self.free_camera is not None:
            from xr_runtime.gl.target import RenderTarget

            self._free_target = RenderTarget(self.free_camera.width, self.free_camera.height)

    def teardown_gl(self) -> None:
        if self._readback is not None:
            self._readback.close()
            self._readback = None
        if self._free_target is not None:
            self._free_target.delete()
            self._free_target = None

    def collect(self) -> None:
        """Hands finished readbacks to the consumers that asked for them (render thread). Called
        after each frame is submitted (the copy is usually done by then: no frame of delay) and
        again before the next one (for copies that were still running)."""
        if self._readback is None:
            return
        t = time.perf_counter()
        done = self._readback.collect()
        now = time.monotonic_ns()
        for image, meta in done:
            frame = SpectatorFrame(image, meta.index, meta.display_ns, meta.grabbed_ns, now)
            for consumer in meta.consumers:
                consumer.offer(frame)
            self.counters.delivered += 1
        if done:
            self.counters.readback_ms_total += (time.perf_counter() - t) * 1e3

    def after_eye(self, frame_index: int, display_ns: int, eye_index: int, target) -> None:
        """Called after each eye is drawn; queues the readback of the chosen one when wanted."""
        self._max_eye = max(self._max_eye, eye_index)
        if self._readback is None or self.free_camera is not None or eye_index != min(self.eye, self._max_eye):
            return
        wanting = self._wanting()
        if wanting:
            self._grab(frame_index, display_ns, target, wanting)

    def after_frame(self, frame_index: int, display_ns: int, draw) -> None:
        """With a free camera: when a frame is wanted, `draw(view, projection, target)` renders the
        scene into the tap's own target, which is then read back like an eye."""
        if self._readback is None or self.free_camera is None:
            return
        wanting = self._wanting()
        if not wanting:
            return
        t = time.perf_counter()
        view, projection = self.free_camera.view_projection()
        draw(view, projection, self._free_target)
        self.counters.readback_ms_total += (time.perf_counter() - t) * 1e3
        self._grab(frame_index, display_ns, self._free_target, wanting)

    def _wanting(self) -> tuple:
        now = time.monotonic_ns()
        return tuple(c for c in self.consumers if c.wants_frame(now))   # asking takes a frame of their rate

    def _grab(self, frame_index: int, display_ns: int, target, wanting: tuple) -> None:
        t = time.perf_counter()
        if self._readback.start(target, _Meta(frame_index, display_ns, time.monotonic_ns(), wanting)):
            self.counters.grabbed += 1
        else:
            self.counters.declined += 1
        self.counters.readback_ms_total += (time.perf_counter() - t) * 1e3

    def summary(self) -> dict:
        c = self.counters
        view = "free camera" if self.free_camera else ("right" if self.eye else "left")
        return {"view": view, "grabbed": c.grabbed, "delivered": c.delivered, "declined": c.declined,
                "render_thread_ms_total": round(c.readback_ms_total, 3)}


class LatestFrame:
    """A one-slot mailbox between the render thread and a consumer thread: a new frame replaces
    an unread one (counted as dropped); `get` waits for a frame or `close`."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: SpectatorFrame | None = None
        self._closed = False
        self.put_count = 0
        self.replaced = 0

    @property
    def empty(self) -> bool:
        return self._frame is None

    def put(self, frame: SpectatorFrame) -> None:
        with self._cond:
            if self._frame is not None:
                self.replaced += 1
            self._frame = frame
            self.put_count += 1
            self._cond.notify()

    def get(self, timeout_s: float | None = None) -> SpectatorFrame | None:
        with self._cond:
            if self._frame is None and not self._closed:
                self._cond.wait(timeout_s)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass
class RateGate:
    """At most `max_fps` frames a second (0: no cap), on the frame loop's own clock."""

    max_fps: float
    _next_ns: int = field(default=0)

    def ready(self, now_ns: int) -> bool:
        return self.max_fps <= 0 or now_ns >= self._next_ns

    def taken(self, now_ns: int) -> None:
        if self.max_fps > 0:
            period = int(1e9 / self.max_fps)
            # Keep the cadence but never bank credit for frames that were not wanted.
            self._next_ns = max(self._next_ns + period, now_ns + period // 2) if self._next_ns else now_ns + period
