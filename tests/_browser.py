"""The browser tests' Chromium (xr_runtime/web/chromium.py), failing rather than skipping in CI."""
from __future__ import annotations

import os

import pytest

from xr_runtime.web import chromium
from xr_runtime.web.chromium import canvas_pixels, save_artifact, stop_chromium  # noqa: F401


def start_chromium():
    reason = chromium.missing_browser()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(reason)        # CI must run the browser tests, not skip them
        pytest.skip(reason)
    return chromium.start_chromium()
