"""`headcast calibrate clock`: measure the clock offset and drift to a peer, or serve a clock."""
from __future__ import annotations

import time
from pathlib import Path

from calibration.clock_service import ClockClient, ClockServer
from core.errors import HeadcastError
from tools.bench_common import write_json
from tools.net_args import curve_client_from_args


def register(cal_sub) -> None:
    c = cal_sub.add_parser("clock", help="NTP-style offset/drift to a peer's clock service (render node: feature port + 1)")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--peer", metavar="ENDPOINT", help="clock service to measure against, e.g. tcp://render-pc:5556")
    g.add_argument("--serve", metavar="ENDPOINT", help="run a clock service here (loopback unless --insecure)")
    c.add_argument("--count", type=int, default=200, help="exchanges to make (--peer)")
    c.add_argument("--interval", type=float, default=0.01, help="seconds between exchanges (--peer)")
    c.add_argument("--seconds", type=float, default=None, help="how long to serve (--serve; default until Ctrl-C)")
    c.add_argument("--json", type=Path, metavar="FILE")
    c.add_argument("--insecure", action="store_true")
    c.add_argument("--server-key", type=Path, help="peer's CURVE public key (with --peer)")
    c.add_argument("--client-key", type=Path, help="this node's CURVE secret key (with --peer)")
    c.set_defaults(func=run)


def run(args) -> int:
    if args.serve:
        try:
            server = ClockServer(args.serve, insecure=args.insecure)
        except Exception as exc:
            raise HeadcastError(f"cannot serve a clock on {args.serve}: {exc}") from exc
        print(f"clock service on {server.endpoint}", flush=True)
        try:
            t_end = None if args.seconds is None else time.monotonic() + args.seconds
            while t_end is None or time.monotonic() < t_end:
                time.sleep(0.1)
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
        return 0
    with ClockClient(args.peer, curve_client=curve_client_from_args(args)) as client:
        mapping = client.measure(count=args.count, interval_s=args.interval)
        timeouts = client.timeouts
    if mapping is None:
        raise HeadcastError(f"no answer from {args.peer} ({timeouts} timeouts): is a render node or "
                       "`headcast calibrate clock --serve` running there?")
    print(f"peer {args.peer}: offset {mapping.offset_ns / 1e6:+.3f} ms (peer − local), "
          f"drift {mapping.drift_ppm:+.2f} ppm, best round trip {mapping.min_delay_ns / 1e3:.0f} µs, "
          f"uncertainty ±{mapping.uncertainty_ns / 1e3:.0f} µs, {mapping.samples} exchanges, {timeouts} timeouts")
    if args.json:
        write_json(args.json, {"peer": args.peer, "mapping": mapping.as_dict(), "timeouts": timeouts})
    return 0
