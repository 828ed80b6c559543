"""`headcast keys generate DIR`: CURVE key pairs for a render node and its capture clients.

Layout written::

    DIR/server.key, DIR/server.key_secret     render node (the side that binds)
    DIR/clients/NAME.key, NAME.key_secret     one pair per capture node
    DIR/allowed/NAME.key                      public keys the render node accepts (its allow-list)
"""
from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import HeadcastError
from streaming.sockets import generate_keys


def register(sub) -> None:
    p = sub.add_parser("keys", help="CURVE keys for encrypted, allow-listed streams")
    ksub = p.add_subparsers(dest="keys_command", metavar="ACTION")
    ksub.required = True
    g = ksub.add_parser("generate", help="write a server key pair and client key pairs")
    g.add_argument("dir", type=Path)
    g.add_argument("--client", action="append", dest="clients", metavar="NAME",
                   help="client name (repeatable; default: one client named 'capture')")
    g.set_defaults(func=run_generate)


def run_generate(args) -> int:
    clients = args.clients or ["capture"]
    d: Path = args.dir
    try:
        if not (d / "server.key_secret").exists():
            generate_keys(d, ["server"])
        generate_keys(d / "clients", clients)
    except (FileExistsError, ValueError) as exc:
        raise HeadcastError(str(exc)) from exc
    allowed = d / "allowed"
    allowed.mkdir(exist_ok=True)
    for name in clients:
        shutil.copy2(d / "clients" / f"{name}.key", allowed / f"{name}.key")
    print(f"render node:   --server-key {d / 'server.key_secret'} --allow {allowed}")
    for name in clients:
        print(f"capture node:  --server-key {d / 'server.key'} --client-key {d / 'clients' / (name + '.key_secret')}")
    print("copy each client's .key_secret only to its own capture machine; revoke a client by deleting its file in allowed/")
    return 0
