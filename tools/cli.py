"""The `headcast` command: one entry point, one module per subcommand (``tools/cmd_*.py``).

Each subcommand module exposes ``register(subparsers)`` which adds its parser and sets
``func`` to a callable taking the parsed args and returning an exit code.
"""
from __future__ import annotations

import argparse
import logging
import sys

from core.errors import HeadcastError
from core.third_party_logs import quiet_python_noise, show_third_party_logs
from tools.registry import register_all

# Subcommand modules, in the order `headcast --help` lists them.
SUBCOMMANDS = (
    "tools.cmd_samples",
    "tools.cmd_keys",
    "tools.cmd_listen",
    "tools.cmd_capture",
    "tools.cmd_adapt",
    "tools.cmd_replay",
    "tools.cmd_calibrate",
    "tools.cmd_bench",
    "tools.cmd_eval",
    "tools.cmd_demo",
    "tools.cmd_render",
    "tools.cmd_room",
    "tools.cmd_build_avatar",
    "tools.cmd_avatar",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headcast",
        description="Animate a personalised neural head avatar from live video, in VR.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    register_all(sub, SUBCOMMANDS)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if args.verbose:
        show_third_party_logs()      # -v: MediaPipe / TensorFlow Lite / protobuf output comes back
    else:
        quiet_python_noise()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except HeadcastError as exc:
        print(f"headcast {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
