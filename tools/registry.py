"""Subcommand modules register themselves: each exposes ``register(subparsers)``."""
from __future__ import annotations

import importlib


def register_all(subparsers, module_names) -> None:
    for name in module_names:
        importlib.import_module(name).register(subparsers)
