"""Per-stage timing of the capture node (decode, landmarks, features, encode+send)."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from core.percentiles import percentiles

STAGES = ("decode", "landmarks", "features", "send")
STAGE_LABELS = {"decode": "decode", "landmarks": "landmarks", "features": "features", "send": "encode+send"}
_KEEP = 100_000  # samples per series; bounded so a day-long session does not grow memory


def _series() -> collections.deque:
    return collections.deque(maxlen=_KEEP)




@dataclass
class CaptureStats:
    frames: int = 0  # frames taken from the source
    face_frames: int = 0
    face_lost: int = 0  # frames sent flagged FACE_LOST (no face, or degenerate landmarks)
    degenerate: int = 0  # of those: the tracker returned landmarks too degenerate to align
    sent: int = 0  # messages handed to the socket (incl. end of stream)
    send_dropped: int = 0  # messages the socket refused (peer too slow)
    source_skipped: int = 0  # stale camera frames replaced by newer ones before we took them
    calibrating_frames: int = 0
    source_missing_frames: int = 0  # frames a video's header announced that never decoded (a few: a warning)
    peer_connected: bool | None = None  # a render node accepted the connection (None: we bound, not connected)
    wall_s: float = 0.0
    stage_ms: dict[str, collections.deque] = field(default_factory=lambda: {s: _series() for s in STAGES})
    capture_to_sent_ms: collections.deque = field(default_factory=_series)
    # Optical frame counters read off the camera frames (bench glass): (seq, t_capture, marker id).
    optical_markers: collections.deque = field(default_factory=_series)

    def add(self, stage: str, ms: float) -> None:
        self.stage_ms[stage].append(ms)

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> dict:
        return {
            "frames": self.frames,
            "face_frames": self.face_frames,
            "face_lost": self.face_lost,
            "degenerate": self.degenerate,
            "calibrating_frames": self.calibrating_frames,
            "sent": self.sent,
            "send_dropped": self.send_dropped,
            "source_skipped": self.source_skipped,
            "source_missing_frames": self.source_missing_frames,
            "peer_connected": self.peer_connected,
            "wall_s": self.wall_s,
            "fps": self.fps,
            "stages_ms": {s: percentiles(self.stage_ms[s], qs=(50, 95)) for s in STAGES},
            "capture_to_sent_ms": percentiles(self.capture_to_sent_ms, qs=(50, 95)),
            **({"optical_markers": [list(m) for m in self.optical_markers]} if self.optical_markers else {}),
        }


def format_table(summary: dict) -> str:
    def f(v):
        return "   -  " if v is None else f"{v:6.2f}"

    lines = [f"{'stage':<14}{'p50 ms':>8}{'p95 ms':>8}"]
    for s in STAGES:
        st = summary["stages_ms"][s]
        lines.append(f"{STAGE_LABELS[s]:<14}{f(st['p50']):>8}{f(st['p95']):>8}")
    c = summary["capture_to_sent_ms"]
    lines.append(f"{'capture→sent':<14}{f(c['p50']):>8}{f(c['p95']):>8}")
    lines.append(
        f"frames {summary['frames']} (face {summary['face_frames']}, lost {summary['face_lost']}), "
        f"{summary['fps']:.1f} fps, sent {summary['sent']}, send drops {summary['send_dropped']}, "
        f"camera frames skipped {summary['source_skipped']}"
    )
    return "\n".join(lines)
