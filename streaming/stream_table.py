"""The stream table: what arrives at an endpoint, per stream — rate, age, drops, face lost, feature
values. One definition for the two places that show it: `headcast listen` prints it as text, the
render node's web page (`xr_runtime/web`) as an HTML table; both get the same cells from `rows`.

`clock` is anything with `mapping_for(stream_id)` returning a clock mapping (`calibration`'s
`ClockServer`), or None; it is duck-typed so this module stays below `calibration`.
"""
from __future__ import annotations

import numpy as np

from geometry.facemesh_eyes import eyes_from_features
from streaming.protocol import Flags
from streaming.receiver import Receiver, status_as_dict

# (key, header, width) of each column, in display order; width is the text table's.
COLUMNS = (
    ("stream", "stream", -16), ("kind", "kind", -9), ("state", "state", -10), ("rate_hz", "rate Hz", 8),
    ("age_ms", "age ms", 9), ("received", "recv", 8), ("dropped", "drop", 6), ("stale", "stale", 6),
    ("capture_to_receive_ms", "cap→rx ms", 10), ("eyes", "eyes R/L shut, gaze", -22),
    ("features", "features (mean|f|, max|f|, first values)", 0),
)
MP478_GAIN = 5.0  # inference.features.mp478.FEATURE_GAIN (this module sits below inference)


def feature_summary(features: np.ndarray, n_values: int) -> dict:
    f = np.asarray(features, dtype=np.float32).ravel()
    if f.size == 0:
        return {"mean_abs": 0.0, "max_abs": 0.0, "values": []}
    return {
        "mean_abs": float(np.abs(f).mean()),
        "max_abs": float(np.abs(f).max()),
        "values": [round(float(v), 4) for v in f[:n_values]],
    }


def collect(receiver: Receiver, n_values: int, clock=None) -> dict:
    """A JSON-ready snapshot of every stream the receiver has seen, plus its counters."""
    streams = {}
    for sid, st in receiver.snapshot().items():
        d = status_as_dict(st)
        latest = receiver.latest(sid)
        if latest is not None:
            d["features"] = feature_summary(latest.features, n_values)
            face = next((f for f in reversed(receiver.window(sid, 4))
                         if f.features.size == 478 * 3 and not (f.flags & Flags.FACE_LOST)), None)
            if face is not None:
                # What the render node will perform: lid closure per eye on the driver's own range
                # (0 his relaxed opening, 1 shut — the capture node's per-driver range normalises it)
                # and the gaze, read off the newest face frame exactly as the engine reads them.
                closure, gaze = eyes_from_features(face.features, MP478_GAIN)
                d["eyes"] = {"closure": [round(float(v), 3) for v in closure],
                             "gaze": [[round(float(v), 3) for v in g] for g in gaze]}
            d["pose"] = {"rotation_wxyz": list(latest.pose.rotation), "translation": list(latest.pose.translation),
                         "scale": latest.pose.scale}
            d["confidence"] = latest.confidence
            d["flags"] = latest.flags.name if latest.flags else ""
            d["capture_to_receive_ms"] = None
            mapping = clock.mapping_for(sid) if clock else None
            d["clock"] = mapping.as_dict() if mapping else None
            rec = receiver.latest_received(sid)
            if rec is not None and rec.frame.t_capture_ns:
                # Capture-host time mapped onto this host's clock when the node reported a mapping;
                # otherwise the raw difference, which is only meaningful on one host.
                t_cap = mapping.to_remote(rec.frame.t_capture_ns) if mapping else rec.frame.t_capture_ns
                d["capture_to_receive_ms"] = (rec.t_receive_ns - t_cap) / 1e6
        streams[sid] = d
    c = receiver.counters
    return {"streams": streams, "messages": c.messages, "malformed": c.malformed,
            "malformed_by_kind": c.malformed_by_kind, "unknown_stream": c.unknown_stream,
            "receiver": c.as_dict(), "clock": clock.stats() if clock is not None and hasattr(clock, "stats") else None}


def stream_state(d: dict) -> str:
    return "LOST" if d["lost"] else ("EOS" if d["end_of_stream"] else ("no-face" if d["face_lost"] else "live"))


def rows(stats: dict) -> list[dict[str, str]]:
    """The table's cells as text, one dict per stream (keys: COLUMNS), sorted by stream id."""
    out = []
    for sid, d in sorted(stats["streams"].items()):
        age = "-" if d["latest_age_s"] is None else f"{d['latest_age_s'] * 1e3:.0f}"
        lat = d.get("capture_to_receive_ms")
        f = d.get("features", {"mean_abs": 0, "max_abs": 0, "values": []})
        vals = " ".join(f"{v:+.3f}" for v in f["values"])
        out.append({"stream": sid, "kind": d["kind"], "state": stream_state(d), "rate_hz": f"{d['rate_hz']:.1f}",
                    "age_ms": age, "received": str(d["received"]), "dropped": str(d["dropped"]),
                    "stale": str(d["stale"]), "capture_to_receive_ms": "-" if lat is None else f"{lat:.2f}",
                    "eyes": _eyes_cell(d.get("eyes")),
                    "features": f"{f['mean_abs']:.3f} {f['max_abs']:.3f} [{vals}]"})
    return out


def _eyes_cell(eyes: dict | None) -> str:
    if not eyes:
        return "-"
    (cr, cl), g = eyes["closure"], np.mean(eyes["gaze"], axis=0)
    return f"{cr:.2f}/{cl:.2f} {g[0]:+.2f},{g[1]:+.2f}"


def summary_line(stats: dict) -> str:
    line = f"messages {stats['messages']}  malformed {stats['malformed']}  unknown-stream {stats['unknown_stream']}"
    r = stats.get("receiver")
    if r:  # what the receiver refused (issue 11): forged and implausible frames, foreign keys, the cap
        line += (f"  rejected: jumps {r['jumps']} stale {r['stale']} foreign-key {r['foreign_key']} "
                 f"over-capacity {r['over_capacity']}")
    return line


def format_table(stats: dict) -> str:
    def cell(text: str, width: int) -> str:
        return f"{text:<{-width}}" if width < 0 else (f"{text:>{width}}" if width else f"  {text}")

    lines = [summary_line(stats), "".join(cell(h, w) for _, h, w in COLUMNS)]
    for row in rows(stats):
        lines.append("".join(cell(row[k], w) for k, _, w in COLUMNS))
    if not stats["streams"]:
        lines.append("(no streams yet)")
    return "\n".join(lines)


__all__ = ["COLUMNS", "collect", "feature_summary", "format_table", "rows", "stream_state", "summary_line"]
