"""`headcast listen`: a debug view of what arrives at a render node's endpoint (the table is
`streaming/stream_table.py`, shared with the render node's web page)."""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from calibration.clock_service import start_clock_service
from core.atomic_files import atomic_write_json
from streaming.receiver import Receiver, ReceiverConfig
from streaming.stream_table import collect, format_table
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
