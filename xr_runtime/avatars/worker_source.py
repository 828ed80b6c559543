"""An `AvatarStateSource` whose states come from a producer function run on its own thread.

    source = WorkerStateSource(step, WorkerPacing(wake=receiver_wake(receiver)))   # step on arrival
    source = WorkerStateSource(step, WorkerPacing(period_s=1/60))                  # fixed timer
    source.start(); ...; source.stop()

The worker publishes the newest result per stream under a short lock; `latest` only reads that
dictionary, so the render loop never waits for inference. A step that raises is counted and
logged once; the worker goes on. This is where the streaming engine plugs in: `step` wraps
`engine.step(receiver)` and converts its states to `AvatarFrameState`.

**When it steps.** With a `wake` (the receiver's frame arrivals) the worker steps as soon as a
frame arrives — measured within about a millisecond — and otherwise every `idle_period_s`, so
fades and stream-loss handling go on without frames. A fixed timer in the middle of the chain
instead costs half its period on average and, beating against the capture and display clocks,
makes the latency depend on their phase (issue 14: the queue stage was 12 ms p50, 31 ms p95 at
60 Hz). The fixed period stays available (`period_s` without `wake`) so the two can be compared
in one run (`headcast bench latency --compare`).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

from xr_runtime.avatars.state import AvatarFrameState

log = logging.getLogger(__name__)

PACINGS = ("frames", "timer")


@dataclass(frozen=True)
class WorkerPacing:
    """`wake(timeout_s)` blocks until new input or the timeout; None: step every `period_s`."""

    wake: Callable[[float], object] | None = None
    period_s: float = 1 / 60             # the fixed timer (no wake), or back-to-back when 0
    idle_period_s: float = 1 / 30        # with a wake: the longest gap between steps (fades, loss)

    @property
    def mode(self) -> str:
        return "frames" if self.wake is not None else "timer"


def receiver_wake(receiver) -> Callable[[float], int]:
    """A wake function over a `streaming.receiver.FrameArrivals`: returns when a frame newer than
    the last one it saw arrives, or after the timeout."""
    seen = [receiver.generation]

    def wake(timeout_s: float) -> int:
        seen[0] = receiver.wait_for_frame(seen[0], timeout_s)
        return seen[0]

    return wake


class WorkerStateSource:
    def __init__(self, step: Callable[[], Mapping[str, AvatarFrameState]], pacing: WorkerPacing | float = WorkerPacing(),
                 name: str = "avatar-states") -> None:
        self._step = step
        # A bare number is the fixed timer's period (the form every caller used before wakes).
        self.pacing = pacing if isinstance(pacing, WorkerPacing) else WorkerPacing(period_s=float(pacing))
        self._latest: dict[str, AvatarFrameState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.steps = 0
        self.errors = 0
        self.step_ms = 0.0

    def start(self) -> "WorkerStateSource":
        self._thread.start()
        return self

    def _run(self) -> None:
        pacing = self.pacing
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                states = dict(self._step())
            except Exception as exc:  # keep producing; the render loop shows the last good state
                self.errors += 1
                if self.errors == 1:
                    log.exception("avatar state producer failed (further failures only counted): %s", exc)
                self._stop.wait(0.05)
                continue
            with self._lock:
                self._latest.update(states)
            self.steps += 1
            self.step_ms = (time.perf_counter() - t0) * 1e3
            if pacing.wake is not None:
                pacing.wake(pacing.idle_period_s)
                continue
            rest = pacing.period_s - (time.perf_counter() - t0)
            if rest > 0:
                self._stop.wait(rest)

    def latest(self, stream_id: str, t_display_ns: int) -> AvatarFrameState | None:
        with self._lock:
            return self._latest.get(stream_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
