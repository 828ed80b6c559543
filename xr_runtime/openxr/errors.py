"""The one error the OpenXR modules share (kept apart so choice logic imports no pyopenxr)."""
from __future__ import annotations

from core.errors import BackendUnavailable


class XrUnavailableError(BackendUnavailable):
    """No OpenXR runtime, or one without what this backend needs; the message says what."""
