"""`headcast listen`: a debug view of what arrives at a render node's endpoint."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

from calibration.clock_service import ClockServer, start_clock_service
from core.atomic_files import atomic_write_json
from streaming.receiver import Receiver, ReceiverConfig, status_as_dict
from tools.net_args import add_server_args, curve_server_from_args
from xr_runtime.interrupts import stop_event_on_signals


def register(sub) -> None:
    p = sub.add_parser("listen", help="show streams arriving at an endpoint: rates, ages, drops, feature values")
    add_server_args(p)
    p.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the final statistics as JSON")
    p.add_argument("--values", type=int, default=6, metavar="N", help="feature values shown per stream")
    p.add_argument("--interval", type=float, default=0.5, help="seconds between table refreshes")
    p.add_argument("--lost-after", type=float, default=1.0, help="seconds of silence before a stream is lost")
    p.add_argument("--clock-bind", default="auto", metavar="ENDPOINT|auto|off",
                   help="clock service for capture nodes' clock calibration (auto: the --bind port + 1)")
    p.set_defaults(func=run)


def feature_summary(features: np.ndarray, n_values: int) -> dict:
    f = np.asarray(features, dtype=np.float32).ravel()
    if f.size == 0:
        return {"mean_abs": 0.0, "max_abs": 0.0, "values": []}
    return {
        "mean_abs": float(np.abs(f).mean()),
        "max_abs": float(np.abs(f).max()),
        "values": [round(float(v), 4) for v in f[:n_values]],
    }


def collect(receiver: Receiver, n_values: int, clock: ClockServer | None = None) -> dict:
    streams = {}
    for sid, st in receiver.snapshot().items():
        d = status_as_dict(st)
        latest = receiver.latest(sid)
        if latest is not None:
            d["features"] = feature_summary(latest.features, n_values)
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
            "receiver": c.as_dict(), "clock": clock.stats() if clock else None}


def format_table(stats: dict) -> str:
    r = stats["receiver"]
    lines = [f"messages {stats['messages']}  malformed {stats['malformed']}  unknown-stream {stats['unknown_stream']}  "
             f"rejected: jumps {r['jumps']} stale {r['stale']} foreign-key {r['foreign_key']} "
             f"over-capacity {r['over_capacity']}",
             f"{'stream':<16}{'kind':<9}{'state':<10}{'rate Hz':>8}{'age ms':>9}{'recv':>8}{'drop':>6}{'stale':>6}"
             f"{'cap→rx ms':>10}  features (mean|f|, max|f|, first values)"]
    for sid, d in sorted(stats["streams"].items()):
        state = "LOST" if d["lost"] else ("EOS" if d["end_of_stream"] else ("no-face" if d["face_lost"] else "live"))
        age = "-" if d["latest_age_s"] is None else f"{d['latest_age_s'] * 1e3:.0f}"
        lat = d.get("capture_to_receive_ms")
        f = d.get("features", {"mean_abs": 0, "max_abs": 0, "values": []})
        vals = " ".join(f"{v:+.3f}" for v in f["values"])
        lines.append(f"{sid:<16}{d['kind']:<9}{state:<10}{d['rate_hz']:>8.1f}{age:>9}{d['received']:>8}"
                     f"{d['dropped']:>6}{d['stale']:>6}{'-' if lat is None else f'{lat:.2f}':>10}  "
                     f"{f['mean_abs']:.3f} {f['max_abs']:.3f} [{vals}]")
    if not stats["streams"]:
        lines.append("(no streams yet)")
    return "\n".join(lines)


def run(args) -> int:
    curve = curve_server_from_args(args)
    cfg = ReceiverConfig(endpoint=args.bind, bind=True, curve_server=curve, insecure=args.insecure,
                         lost_after_s=args.lost_after)
    receiver = Receiver(cfg).start()  # a port in use, a bad endpoint or key: a HeadcastError naming it
    try:
        clock = start_clock_service(args.clock_bind, receiver.bound_endpoint, curve, args.insecure)
    except BaseException:
        receiver.stop()
        raise
    print(f"listening on {receiver.bound_endpoint}{' (CURVE)' if curve else ''}"
          f"{f', clock service on {clock.endpoint}' if clock else ''}", flush=True)
    tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
    t_end = None if args.seconds is None else time.monotonic() + args.seconds
    stats = collect(receiver, args.values, clock)
    # Ctrl-C and SIGTERM end the run the same way: the final statistics (and --json) are written.
    try:
        with stop_event_on_signals() as stop:
            while (t_end is None or time.monotonic() < t_end) and not stop.is_set():
                stop.wait(args.interval if t_end is None else max(0.0, min(args.interval, t_end - time.monotonic())))
                stats = collect(receiver, args.values, clock)
                table = format_table(stats)
                print(("\x1b[H\x1b[J" if tty else "") + table + ("" if tty else "\n"), flush=True)
    finally:
        stats = collect(receiver, args.values, clock)
        receiver.stop()
        if clock:
            clock.close()
    if args.json:
        atomic_write_json(args.json, stats)
    return 0
