"""Display refresh rate through XR_FB_display_refresh_rate: which rates the headset offers, which
one we ask for, which one it runs at.

Headsets such as Quest, Pico and Index run at 72/80/90/120/144 Hz and start at a low default; a
runtime that offers this extension lets the app ask for more. Without a request we ask for the
highest offered rate (smoothest head motion; our frame budget follows the predicted display
period anyway). A configured rate that is not offered exactly takes the nearest offered one.

The runtime may change the rate itself later (thermal limits, the user's settings): it then
sends XrEventDataDisplayRefreshRateChangedFB, which `on_changed` records (the session's event
loop passes it on).
Monado (null compositor) offers exactly one rate, 20 Hz, so a change event cannot be provoked
against it; the event handling is tested with the real event struct.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from types import ModuleType
from typing import Sequence

log = logging.getLogger(__name__)

EXTENSION = "XR_FB_display_refresh_rate"


def choose_refresh_rate(offered: Sequence[float], wanted: float | None) -> float | None:
    """The rate to request: the highest offered without a wish, else the offered one nearest to it
    (on a tie the higher one). None when nothing is offered."""
    rates = sorted({float(r) for r in offered if r > 0})
    if not rates:
        return None
    if wanted is None:
        return rates[-1]
    return min(rates, key=lambda r: (abs(r - wanted), -r))


@dataclass
class RefreshRateState:
    offered: list[float] = field(default_factory=list)
    requested: float | None = None
    current: float | None = None
    changes: list[tuple[float, float]] = field(default_factory=list)  # (from, to) per runtime event
    error: str = ""                                                   # why a request failed

    def on_changed(self, event) -> None:
        """Record an XrEventDataDisplayRefreshRateChangedFB (already cast to that struct)."""
        old, new = float(event.from_display_refresh_rate), float(event.to_display_refresh_rate)
        self.changes.append((old, new))
        self.current = new
        log.info("display refresh rate changed by the runtime: %.1f → %.1f Hz", old, new)

    def as_dict(self) -> dict:
        return {"offered": list(self.offered), "requested": self.requested, "current": self.current,
                "changes": [list(c) for c in self.changes], "error": self.error}


def _value(number) -> float:
    # pyopenxr returns a c_float from xrGetDisplayRefreshRateFB, plain floats from the enumeration.
    return float(getattr(number, "value", number))


class RefreshRate:
    """Enumerates, requests and tracks the display refresh rate of one session."""

    def __init__(self, xr: ModuleType, session, wanted: float | None) -> None:
        self._xr = xr
        self._session = session
        self.state = RefreshRateState()
        try:
            self.state.offered = sorted(_value(r) for r in xr.enumerate_display_refresh_rates_fb(session))
            self.state.current = _value(xr.get_display_refresh_rate_fb(session))
        except xr.ResultException as exc:  # an optional nicety: never worth the session
            self.state.error = f"{type(exc).__name__}: {exc}"
            log.warning("display refresh rates unavailable: %s", self.state.error)
            return
        target = choose_refresh_rate(self.state.offered, wanted)
        if wanted is not None and target is not None and abs(target - wanted) > 0.01:
            log.warning("display refresh rate %.1f Hz not offered (have %s); asking for %.1f Hz", wanted,
                        ", ".join(f"{r:g}" for r in self.state.offered), target)
        if target is not None:
            try:
                xr.request_display_refresh_rate_fb(session, target)
                self.state.requested = target
                self.state.current = _value(xr.get_display_refresh_rate_fb(session))
            except xr.ResultException as exc:  # e.g. XR_ERROR_DISPLAY_REFRESH_RATE_UNSUPPORTED_FB
                self.state.error = f"{type(exc).__name__}: {exc}"
                log.warning("requesting %.1f Hz failed: %s", target, self.state.error)
        log.info("display refresh rate %s Hz (offered %s, requested %s)", _fmt(self.state.current),
                 ", ".join(f"{r:g}" for r in self.state.offered) or "none", _fmt(self.state.requested))

    def on_changed(self, event) -> None:
        self.state.on_changed(event)


def _fmt(rate: float | None) -> str:
    return "?" if rate is None else f"{rate:g}"
