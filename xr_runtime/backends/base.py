"""The interface every backend implements: frames with eye views and a predicted display time.

    backend.open()                      # creates the GL context and makes it current
    renderer = Renderer()               # the handler's GL objects live in that context
    stats = backend.run(handler, max_frames=..., seconds=..., stop=event)
    backend.close()

Per frame the backend calls `handler.begin_frame(frame)` once (sample states, upload textures),
`handler.draw_eye(frame, eye)` per view (render into `eye.target`), and `handler.end_frame(frame,
timing)` after it submitted the frame. `frame.display_time_ns` is the predicted display time on
this host's monotonic clock (`time.monotonic_ns()`), what avatar states are sampled for.
"""
from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Mapping, Protocol

import numpy as np

from geometry import transforms
from xr_runtime.gl.eye_view import EyeView
from xr_runtime.scene.hand import HandState

IPD_M = 0.064  # eye distance of the simulated head (adult average)


@dataclass(frozen=True)
class BackendFrame:
    index: int
    display_time_ns: int          # predicted, time.monotonic_ns() clock
    period_ns: int                # expected frame interval
    should_render: bool = True
    hands: Mapping[str, HandState] = field(default_factory=dict)
    wait_ms: float = 0.0          # time the backend blocked for pacing before this frame


@dataclass(frozen=True)
class SubmitTiming:
    submit_ms: float | None       # glFinish / swap / xrEndFrame share the backend can measure
    output_ms: float = 0.0        # extra work outside the VR budget: readback, PNG/MP4 encoding
    # When the frame was complete (monotonic ns; None: when end_frame is called) and, for a
    # simulated display that knows it, when it was actually shown (a frame that missed its
    # predicted vsync is shown at the next one); None: the predicted display time stands.
    submitted_ns: int | None = None
    displayed_ns: int | None = None


class FrameHandler(Protocol):
    def begin_frame(self, frame: BackendFrame) -> None: ...
    def draw_eye(self, frame: BackendFrame, eye: EyeView) -> None: ...
    def end_frame(self, frame: BackendFrame, timing: SubmitTiming) -> None: ...


@dataclass
class BackendStats:
    backend: str
    frames: int = 0
    views: int = 0
    seconds: float = 0.0
    reason: str = ""
    info: dict = field(default_factory=dict)


class Backend(ABC):
    name: str = "?"

    @abstractmethod
    def open(self) -> None:
        """Create the window/session and GL context; it is current on this thread afterwards."""

    @abstractmethod
    def run(self, handler: FrameHandler, *, max_frames: int | None = None, seconds: float | None = None,
            stop: threading.Event | None = None) -> BackendStats: ...

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self):
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def head_eye_views(position, rotation_wxyz, stereo: bool) -> list[tuple[np.ndarray, float]]:
    """World → eye matrices for a simulated head: one centre eye, or two eyes IPD apart.

    Returns (view matrix, horizontal offset) pairs; the offset is ±IPD/2 along the head's x axis.
    """
    w, x, y, z = rotation_wxyz
    head = transforms.pose_matrix(position, (x, y, z, w))
    offsets = (-IPD_M / 2, IPD_M / 2) if stereo else (0.0,)
    views = []
    for dx in offsets:
        eye = head @ transforms.translation(dx, 0.0, 0.0)
        views.append((np.linalg.inv(eye.astype(np.float64)).astype(np.float32), dx))
    return views


def stop_reason(index: int, max_frames: int | None, t0_ns: int, seconds: float | None, stop) -> str | None:
    """Why a frame loop should end now (frames, time, a stop request), or None to go on."""
    if max_frames is not None and index >= max_frames:
        return "max frames"
    if seconds is not None and time.monotonic_ns() - t0_ns >= seconds * 1e9:
        return "time"
    if stop is not None and stop.is_set():
        return "stop requested"
    return None
