"""`headcast adapt livelink|vmc|osc`: turn Live Link Face, VMC or Unified-Expressions OSC into a
Headcast ``expr52`` stream to a render node (capture/interop)."""
from __future__ import annotations

import json
import signal
from pathlib import Path

from capture.interop.common import parse_host_port
from capture.interop.run import KINDS, AdaptConfig, AdapterNode
from core.errors import HeadcastError
from tools.net_args import add_client_args, curve_client_from_args

DEFAULT_PORTS = {"livelink": 11111, "vmc": 39539, "osc": 9000}


def register(sub) -> None:
    p = sub.add_parser("adapt", help="publish Live Link Face / VMC / Unified-Expressions OSC as a Headcast stream")
    p.add_argument("kind", choices=KINDS, help="livelink (Live Link Face UDP), vmc (VMC protocol), osc (Unified Expressions)")
    p.add_argument("--listen", default=None, metavar="HOST:PORT",
                   help="UDP address to listen on (default 127.0.0.1 and the format's usual port: "
                        "livelink 11111, vmc 39539, osc 9000)")
    p.add_argument("--insecure-listen", action="store_true", help="allow a non-loopback --listen address (UDP has no CURVE)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="ENDPOINT", help="render node endpoint (tcp://HOST:PORT)")
    where.add_argument("--bind", metavar="ENDPOINT", help="bind here instead (loopback)")
    p.add_argument("--stream", required=True, metavar="ID", help="stream id (1-32 of A-Z a-z 0-9 _ . -)")
    p.add_argument("--subject", help="livelink: only this Live Link subject name")
    p.add_argument("--seconds", type=float, help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the adapter's counters as JSON")
    add_client_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        host, port = parse_host_port(args.listen or f"127.0.0.1:{DEFAULT_PORTS[args.kind]}")
    except ValueError as exc:
        raise HeadcastError(f"--listen: {exc}") from exc
    curve = curve_client_from_args(args) if args.connect else None
    cfg = AdaptConfig(args.kind, host, port, args.connect or args.bind, args.stream, bind=bool(args.bind),
                      insecure_listen=args.insecure_listen, curve_client=curve, subject=args.subject)
    node = AdapterNode(cfg)
    previous = signal.signal(signal.SIGTERM, lambda *_: node.stop())
    print(f"{args.kind}: listening on {node.address[0]}:{node.address[1]} → {cfg.endpoint} as {args.stream!r}",
          flush=True)
    try:
        stats = node.run(args.seconds)
    except KeyboardInterrupt:
        stats = node.adapter.stats
    finally:
        signal.signal(signal.SIGTERM, previous)
        node.close()
    summary = stats.as_dict()
    print(json.dumps(summary))
    if args.stats_json:
        from core.atomic_files import atomic_write_json

        atomic_write_json(args.stats_json, summary)
    return 0
