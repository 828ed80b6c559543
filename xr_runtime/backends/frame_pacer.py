"""When the headless backend starts a frame, and for which display instant: a simulated display.

The headless backend stands in for a display that refreshes every `period_ns` on a fixed grid
of vsync instants. A frame is shown at the next vsync after it is submitted, so what matters for
latency is how late before that vsync the frame *starts* — the moment the render loop takes the
newest avatar state:

* ``late`` (default): start just in time — the vsync minus the time frames have recently taken
  from start to submit (their 90th percentile over the last second) minus a margin. The state is
  then at most that work time old when it is shown, the way a compositor's `xrWaitFrame` wakes an
  application late and predicts the display time (OpenXR runtimes do this on their own).
* ``period_start``: start at the beginning of the period (the previous vsync) — what the backend
  did before; the sampled state then waits a whole period before it is shown.

A frame that would miss its vsync is moved to the next one (never a queue of late frames).
"""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

WAKES = ("late", "period_start")


@dataclass
class FramePacer:
    period_ns: int
    start_ns: int                        # the first vsync is one period after this
    wake: str = "late"
    margin_ns: int = 2_000_000           # headroom for the start-to-submit time's jitter
    work_ns: collections.deque = field(default_factory=lambda: collections.deque(maxlen=60))
    missed: int = 0                      # vsyncs skipped because a frame could not make them
    late_frames: int = 0                 # frames complete after their vsync (shown one or more later)

    def __post_init__(self) -> None:
        if self.wake not in WAKES:
            raise ValueError(f"unknown wake {self.wake!r} (one of {', '.join(WAKES)})")
        self._vsync = self.start_ns + self.period_ns

    def budget_ns(self) -> int:
        """How long before its vsync a frame starts (late wake)."""
        if self.wake == "period_start":
            return self.period_ns
        if not self.work_ns:
            return self.period_ns // 2  # nothing measured yet: half a period
        need = int(np.percentile(np.asarray(self.work_ns, dtype=np.float64), 90)) + self.margin_ns
        return max(self.margin_ns, min(self.period_ns, need))

    def next_frame(self, now_ns: int) -> tuple[int, int]:
        """(start at, display at) for the next frame, both on the monotonic clock; start ≥ now."""
        budget = self.budget_ns()
        # Latest acceptable start for a vsync: period_start mode may start any time before it;
        # late mode within its margin of the planned start (later would miss it).
        slack = budget if self.wake == "period_start" else self.margin_ns
        while now_ns > self._vsync - budget + slack:
            self._vsync += self.period_ns  # this vsync cannot be made: aim at the next one
            self.missed += 1
        display = self._vsync
        self._vsync += self.period_ns
        return max(now_ns, display - budget), display

    def shown_at(self, display_ns: int, submitted_ns: int) -> int:
        """The vsync at which a frame aimed at `display_ns` and complete at `submitted_ns` is shown:
        its own, or the first one after it was complete when it was late."""
        if submitted_ns <= display_ns:
            return display_ns
        late = -(-(submitted_ns - display_ns) // self.period_ns)  # whole periods, rounded up
        self.late_frames += 1
        return display_ns + late * self.period_ns

    def record_work(self, ns: int) -> None:
        """Start-to-submit time of the frame just finished."""
        self.work_ns.append(max(0, int(ns)))
