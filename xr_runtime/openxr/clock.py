"""XrTime ↔ this host's monotonic clock (CLOCK_MONOTONIC ns, what `time.monotonic_ns()` reads).

With XR_KHR_convert_timespec_time the runtime converts exactly. Without it, XrTime's epoch is
unknown; `to_monotonic_ns` then returns None and callers fall back to "now + predicted latency".
"""
from __future__ import annotations

import ctypes
from types import ModuleType

CONVERT_TIMESPEC_EXTENSION = "XR_KHR_convert_timespec_time"


class XrClock:
    def __init__(self, xr: ModuleType, instance, enabled: bool) -> None:
        self._xr, self._instance, self.enabled = xr, instance, enabled

    def to_monotonic_ns(self, xr_time: int) -> int | None:
        if not self.enabled:
            return None
        ts = self._xr.convert_time_to_timespec_time_khr(self._instance, xr_time)
        return int(ts.tv_sec) * 1_000_000_000 + int(ts.tv_nsec)

    def from_monotonic_ns(self, monotonic_ns: int) -> int | None:
        if not self.enabled:
            return None
        ts = self._xr.timespec(tv_sec=monotonic_ns // 1_000_000_000, tv_nsec=monotonic_ns % 1_000_000_000)
        return int(self._xr.convert_timespec_time_to_time_khr(self._instance, ctypes.pointer(ts)))
