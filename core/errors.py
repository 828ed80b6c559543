"""The one error root of Headcast.

Every error Headcast raises on purpose — a bad input file, a refused network message, a missing
runtime — derives from `HeadcastError`, so a caller (the CLI above all) can tell "something the
user can act on" from a bug with one `except`. The CLI prints a `HeadcastError`'s message without
a traceback and exits 2; anything else is a bug and keeps its traceback.

`BackendUnavailable` groups what makes a display path unusable on this machine (no OpenXR
runtime, no display for a desktop window, no GL context, no mirror, no CUDA-GL interop): callers
fall back to another path or tell the user which one failed, without matching class names.

Subclasses keep `ValueError` / `RuntimeError` as a second base where they had it, so code written
against the standard exceptions still catches them.
"""
from __future__ import annotations


class HeadcastError(Exception):
    """An error the user can act on; its message says what is wrong and, where it can, what to do."""


class UsageError(HeadcastError):
    """A command was called in a way that cannot work (conflicting or out-of-range options)."""


class BackendUnavailable(HeadcastError, RuntimeError):
    """A display or GPU path cannot be used here (OpenXR, desktop window, mirror, GL context, interop)."""


__all__ = ["HeadcastError", "UsageError", "BackendUnavailable"]
