"""Command-line options for endpoints and CURVE keys, shared by every networked subcommand."""
from __future__ import annotations

import argparse
from pathlib import Path

from core.errors import HeadcastError
from streaming.sockets import DEFAULT_ENDPOINT, CurveClient, CurveServer, InsecureBindError, check_bind_policy


def add_server_args(p: argparse.ArgumentParser, default_bind: str = DEFAULT_ENDPOINT) -> None:
    p.add_argument("--bind", default=default_bind, metavar="ENDPOINT",
                   help=f"endpoint to bind (default {default_bind}; non-loopback needs CURVE or --insecure)")
    p.add_argument("--server-key", type=Path, metavar="SECRET_FILE",
                   help="this node's CURVE secret key file (server.key_secret) to require encryption")
    p.add_argument("--allow", type=Path, metavar="DIR",
                   help="directory of client public keys allowed to connect (with --server-key)")
    p.add_argument("--insecure", action="store_true",
                   help="allow binding a non-loopback address without CURVE (anyone can send)")


def add_client_args(p: argparse.ArgumentParser, prefix: str = "", server: str = "the server") -> None:
    """``--server-key`` / ``--client-key``; with ``prefix`` (e.g. "face-") a second pair for another
    connection of the same command, whose far end ``server`` names."""
    p.add_argument(f"--{prefix}server-key", type=Path, metavar="PUBLIC_FILE",
                   help=f"{server}'s CURVE public key file (server.key)")
    p.add_argument(f"--{prefix}client-key", type=Path, metavar="SECRET_FILE",
                   help="this client's CURVE secret key file (NAME.key_secret)")


def curve_server_from_args(args) -> CurveServer | None:
    if args.server_key is None and args.allow is None:
        curve = None
    elif args.server_key is None or args.allow is None:
        raise HeadcastError("--server-key and --allow go together")
    else:
        for path in (args.server_key, args.allow):
            if not path.exists():
                raise HeadcastError(f"{path} does not exist")
        curve = CurveServer(args.server_key, args.allow)
    try:
        check_bind_policy(args.bind, curve, args.insecure)
    except (InsecureBindError, ValueError) as exc:
        raise HeadcastError(str(exc)) from exc
    return curve


def curve_client_from_args(args, prefix: str = "") -> CurveClient | None:
    """The CURVE client of ``add_client_args(p, prefix)``'s options, or None when neither is given."""
    attr = prefix.replace("-", "_")
    server_key, client_key = getattr(args, f"{attr}server_key"), getattr(args, f"{attr}client_key")
    if server_key is None and client_key is None:
        return None
    if server_key is None or client_key is None:
        raise HeadcastError(f"--{prefix}server-key and --{prefix}client-key go together")
    for path in (server_key, client_key):
        if not path.exists():
            raise HeadcastError(f"{path} does not exist")
    return CurveClient(client_key, server_key)
