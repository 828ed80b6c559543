"""Per-frame stage timings of the render loop and their summary for stats JSON and the overlay."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

import numpy as np

from core.percentiles import percentiles

STAGES = ("wait", "sample", "upload", "draw", "submit", "output", "frame")




@dataclass
class FrameRecord:
    wait: float
    sample: float
    upload: float
    draw_eyes: list[float]
    submit: float | None
    output: float
    frame: float             # begin_frame → end_frame, without wait and output

    @property
    def draw(self) -> float:
        return float(sum(self.draw_eyes))


@dataclass
class FrameStats:
    keep: int = 100_000                     # frames kept for percentiles (bounded memory)
    records: collections.deque = field(default_factory=collections.deque)
    recent_ns: collections.deque = field(default_factory=lambda: collections.deque(maxlen=120))

    def add(self, record: FrameRecord, end_ns: int) -> None:
        if len(self.records) >= self.keep:
            self.records.popleft()
        self.records.append(record)
        self.recent_ns.append(end_ns)

    def fps(self) -> float:
        if len(self.recent_ns) < 2:
            return 0.0
        return (len(self.recent_ns) - 1) / max(1e-9, (self.recent_ns[-1] - self.recent_ns[0]) / 1e9)

    def recent_means(self, n: int = 60) -> dict[str, float]:
        recent = list(self.records)[-n:]
        if not recent:
            return {}
        return {s: float(np.mean([getattr(r, s) or 0.0 for r in recent])) for s in STAGES}

    def summary(self, skip_first: int = 0) -> dict:
        recs = list(self.records)[skip_first:]
        out = {s: percentiles([getattr(r, s) for r in recs]) for s in STAGES}
        eyes = max((len(r.draw_eyes) for r in recs), default=0)
        for e in range(eyes):
            out[f"draw_eye{e}"] = percentiles([r.draw_eyes[e] for r in recs if len(r.draw_eyes) > e])
        return out
