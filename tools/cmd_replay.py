"""`headcast replay`: republish a recorded stream (headcast capture --record) with its timing."""
from __future__ import annotations

import sys
from pathlib import Path

import zmq

from capture.recording import RecordingError
from capture.replay import ReplayConfig, replay
from core.errors import HeadcastError
from streaming.sockets import InsecureBindError
from tools.net_args import add_client_args, curve_client_from_args


def register(sub) -> None:
    p = sub.add_parser("replay", help="republish a recording made with `headcast capture --record`")
    p.add_argument("file", type=Path, metavar="FILE")
    p.add_argument("--connect", required=True, metavar="ENDPOINT", help="render node endpoint")
    p.add_argument("--realtime", action="store_true", help="keep the recorded send timing (default: as fast as possible)")
    p.add_argument("--loop", action="store_true",
                   help="repeat forever (sequence numbers and timestamps continue so receivers accept it)")
    p.add_argument("--restamp", action="store_true",
                   help="shift timestamps to now (default: the exact recorded bytes, unless --loop)")
    add_client_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    cfg = ReplayConfig(path=args.file, endpoint=args.connect, realtime=args.realtime, loop=args.loop,
                       restamp=args.restamp or args.loop, curve_client=curve_client_from_args(args))
    try:
        result = replay(cfg)
    except (RecordingError, InsecureBindError, ValueError) as exc:
        raise HeadcastError(str(exc)) from exc
    except zmq.ZMQError as exc:
        raise HeadcastError(f"cannot use endpoint {args.connect}: {exc}") from exc
    msg = f"replayed {result.sent} messages ({result.dropped} dropped by the socket)"
    if result.truncated_tail_bytes:
        msg += f"; the recording ends in a truncated tail of {result.truncated_tail_bytes} bytes ({result.tail_reason}), skipped"
    print(msg, file=sys.stderr)
    return 0
