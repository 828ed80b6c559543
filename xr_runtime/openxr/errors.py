"""The one error the OpenXR modules share (kept apart so choice logic imports no pyopenxr)."""
from __future__ import annotations


class XrUnavailableError(RuntimeError):
    """No OpenXR runtime, or one without what this backend needs; the message says what."""
