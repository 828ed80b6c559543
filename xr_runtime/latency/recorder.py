"""Camera-to-photon latency, stage by stage, for every captured frame the render node displays.

Each captured frame carries its capture, features-ready and send times (capture host clock, mapped
onto this host's clock by the clock calibration); the render side adds receive, inference start
and end, texture uploaded, frame submitted and the frame's predicted display time. A frame is
recorded once, on the first rendered frame that shows it, so every stage adds up to the
end-to-end figure. Creep is the slope of end-to-end latency over the session: a queue that grows
shows up there long before it shows up in percentiles.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.percentiles import percentiles

# (name, from, to) — consecutive, so the stages sum to capture → display.
STAGES = (
    ("features", "capture", "features"),
    ("send", "features", "send"),
    ("network", "send", "receive"),
    ("queue", "receive", "inference_start"),
    ("inference", "inference_start", "inference_end"),
    ("upload", "inference_end", "upload"),
    ("submit", "upload", "submit"),
    ("display", "submit", "display"),
)
COLUMNS = ("capture", "features", "send", "receive", "inference_start", "inference_end", "upload", "submit", "display")


@dataclass(frozen=True)
class LatencyTrace:
    """Times of one captured frame on the render host's monotonic clock (ns)."""

    stream_id: str
    seq: int
    t_capture_ns: int
    t_features_ns: int
    t_send_ns: int
    t_receive_ns: int
    t_inference_start_ns: int
    t_inference_end_ns: int
    clock_mapped: bool  # False: capture-host times used raw (only right when both nodes share a host)




class LatencyRecorder:
    def __init__(self, max_records: int = 1_000_000):
        self.max_records = max_records
        self._rows: list[tuple] = []  # (stream, seq, capture, features, send, receive, inf0, inf1, upload, submit, display)
        self._last_seq: dict[str, int] = {}
        self.unmapped = 0

    def displayed(self, trace: LatencyTrace, t_upload_ns: int, t_submit_ns: int, t_display_ns: int) -> bool:
        """Records ``trace`` if this is the first frame showing it; returns whether it was recorded."""
        if self._last_seq.get(trace.stream_id) == trace.seq or len(self._rows) >= self.max_records:
            return False
        self._last_seq[trace.stream_id] = trace.seq
        self.unmapped += not trace.clock_mapped
        self._rows.append((trace.stream_id, trace.seq, trace.t_capture_ns, trace.t_features_ns, trace.t_send_ns,
                           trace.t_receive_ns, trace.t_inference_start_ns, trace.t_inference_end_ns,
                           t_upload_ns, t_submit_ns, t_display_ns))
        return True

    def __len__(self) -> int:
        return len(self._rows)

    def rows_since(self, start: int) -> list[tuple]:
        """Stage times (COLUMNS order, ns) of the frames recorded from index ``start`` on."""
        return [r[2:] for r in self._rows[start:]]

    def times(self) -> dict[str, np.ndarray]:
        """Column arrays (ns) for plotting: one entry per recorded frame."""
        names = COLUMNS
        if not self._rows:
            return {n: np.zeros(0, np.int64) for n in names}
        cols = np.array([r[2:] for r in self._rows], dtype=np.int64)
        return {n: cols[:, i] for i, n in enumerate(names)}

    def sequence_numbers(self) -> list[tuple[str, int]]:
        """(stream, seq) of every recorded frame, in the order of `times()`."""
        return [(r[0], r[1]) for r in self._rows]

    def recent_ms(self, n: int = 120) -> dict[str, float]:
        """Mean per stage (and end to end) over the last ``n`` recorded frames: the live overlay."""
        rows = self._rows[-n:]
        if not rows:
            return {}
        cols = np.array([r[2:] for r in rows], dtype=np.float64)
        idx = {name: i for i, name in enumerate(COLUMNS)}
        out = {name: float((cols[:, idx[b]] - cols[:, idx[a]]).mean() / 1e6) for name, a, b in STAGES}
        out["end_to_end"] = float((cols[:, idx["display"]] - cols[:, idx["capture"]]).mean() / 1e6)
        return out

    def report(self) -> dict:
        t = self.times()
        return {"frames": len(self), "stages_ms": summarise(t), "creep_ms_per_min": creep_ms_per_min(t),
                "creep": creep_estimate(t), "unmapped_clock_frames": self.unmapped}


class RecordCursor:
    """Reads a recorder's records in order, each once. What `bench latency --attach` receives
    (through `LatencyPublisher`) and what the render node's web page plots both come from here, so
    the two always see the same records. Rows are only ever appended by the render loop, so a
    reader on another thread may slice them."""

    def __init__(self, recorder: LatencyRecorder) -> None:
        self.recorder = recorder
        self.position = 0

    def new_columns(self) -> dict[str, list[int]]:
        """Columns (COLUMNS, ns) of the records since the last call; empty lists when none."""
        rows = self.recorder.rows_since(self.position)
        self.position += len(rows)
        return {name: [r[i] for r in rows] for i, name in enumerate(COLUMNS)}


def stage_ms(times: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-stage durations (ms) of every recorded frame, plus end to end."""
    out = {name: (times[b] - times[a]) / 1e6 for name, a, b in STAGES}
    out["end_to_end"] = (times["display"] - times["capture"]) / 1e6
    return out


def summarise(times: dict[str, np.ndarray]) -> dict:
    return {name: percentiles(v) for name, v in stage_ms(times).items()}


def creep_ms_per_min(times: dict[str, np.ndarray]) -> float | None:
    """Least-squares slope of end-to-end latency against display time (ms per minute)."""
    if len(times["display"]) < 10:
        return None
    minutes = (times["display"] - times["display"][0]) / 6e10
    if minutes[-1] <= 0:
        return None
    return float(np.polyfit(minutes, (times["display"] - times["capture"]) / 1e6, 1)[0])


# Creep is a slope over minutes: shorter runs measure the phase between the capture and display
# clocks (a step of several ms when it shifts), not a trend. Measured on the 10-minute run:
# within-segment slopes ≈ 0 while one phase step gave −0.46 ms/min overall.
MIN_CREEP_SECONDS = 120.0
CREEP_SEGMENTS = 12


def creep_estimate(times: dict[str, np.ndarray], min_seconds: float = MIN_CREEP_SECONDS,
                   segments: int = CREEP_SEGMENTS) -> dict:
    """Creep with its uncertainty, or the reason there is none.

    The run is cut into `segments` equal spans of display time; the slope is fitted to each span's
    median end-to-end latency, and its standard error comes from that fit — per-frame residuals are
    strongly autocorrelated (the clocks' phase), so a per-frame fit would understate it."""
    n = len(times["display"])
    seconds = float(times["display"][-1] - times["display"][0]) / 1e9 if n else 0.0
    if seconds < min_seconds:
        return {"ms_per_min": None, "stderr_ms_per_min": None, "seconds": round(seconds, 1),
                "reason": f"a {seconds:.0f} s run is too short to estimate creep (needs ≥ {min_seconds:.0f} s)"}
    minutes = (times["display"] - times["display"][0]) / 6e10
    e2e = (times["display"] - times["capture"]) / 1e6
    edges = np.linspace(0.0, minutes[-1], segments + 1)
    which = np.clip(np.searchsorted(edges, minutes, side="right") - 1, 0, segments - 1)
    mids, medians = [], []
    for k in range(segments):
        sel = which == k
        if sel.sum() >= 5:
            mids.append(0.5 * (edges[k] + edges[k + 1]))
            medians.append(float(np.median(e2e[sel])))
    x, y = np.asarray(mids), np.asarray(medians)
    if len(x) < 4:
        return {"ms_per_min": None, "stderr_ms_per_min": None, "seconds": round(seconds, 1),
                "reason": "too few displayed frames per segment to estimate creep"}
    slope, intercept = np.polyfit(x, y, 1)
    residual = y - (slope * x + intercept)
    stderr = float(np.sqrt(residual @ residual / (len(x) - 2) / ((x - x.mean()) @ (x - x.mean()))))
    return {"ms_per_min": float(slope), "stderr_ms_per_min": stderr, "seconds": round(seconds, 1),
            "segments": len(x), "reason": None}


def format_creep(creep: dict) -> str:
    """`+0.012 ± 0.030 ms/min over 10.0 min`, or why it is not given."""
    if creep.get("ms_per_min") is None:
        return f"n/a ({creep.get('reason')})"
    return (f"{creep['ms_per_min']:+.3f} ± {creep['stderr_ms_per_min']:.3f} ms/min over "
            f"{creep['seconds'] / 60:.1f} min")

