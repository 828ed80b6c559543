"""Eye metrics of a transfer run: range share, blink recall and lag, wink independence, gaze.

Series are per-frame eye openings (lid gap / eye width) of driver and avatar, each tracked on its
own face, so every threshold is relative to that face's own range: a blink is the opening falling
below 30 % of its range above the series' minimum (issue 13), the "open height" is the series'
90th percentile. NaN frames (no face) never count as a blink.
"""
from __future__ import annotations

import numpy as np

BLINK_LEVEL = 0.30  # below this share of the range above the minimum: shut
WINK_OTHER_MAX = 0.20  # the other eye may drop at most this share of its range during a wink


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    m = np.r_[False, np.asarray(mask, bool), False]
    d = np.diff(m.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _level(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    lo = np.nanmin(x) if lo is None else lo
    hi = np.nanpercentile(x, 90) if hi is None else hi
    return (x - lo) / max(hi - lo, 1e-9)


def range_share(driver: np.ndarray, avatar: np.ndarray) -> float:
    """Avatar range / driver range, each normalised by its own open-eye height (90th percentile)."""
    d, a = np.asarray(driver, float), np.asarray(avatar, float)
    rd = (np.nanmax(d) - np.nanmin(d)) / max(np.nanpercentile(d, 90), 1e-9)
    ra = (np.nanmax(a) - np.nanmin(a)) / max(np.nanpercentile(a, 90), 1e-9)
    return float(ra / rd) if rd > 0 else float("nan")


def blinks(driver: np.ndarray, avatar: np.ndarray, tolerance: int = 1,
           avatar_reference: tuple[float, float] | None = None) -> dict:
    """Every driver closure (below BLINK_LEVEL of its range) and whether the avatar closed too
    (below BLINK_LEVEL of hers) within ``tolerance`` frames; lag = first avatar-shut frame minus
    first driver-shut frame. ``avatar_reference`` (closed, open) fixes her scale (a wink run, where
    the other eye must be judged on the same scale as a normal run)."""
    d, a = np.asarray(driver, float), np.asarray(avatar, float)
    dn = _level(d)
    an = _level(a, *(avatar_reference or (None, None)))
    events = []
    for lo, hi in _runs(np.nan_to_num(dn, nan=1.0) < BLINK_LEVEL):
        w = np.nan_to_num(an[max(0, lo - tolerance): min(len(a), hi + tolerance)], nan=1.0)
        shut = np.flatnonzero(w < BLINK_LEVEL)
        lag = None if not len(shut) else int(shut[0] + max(0, lo - tolerance) - lo)
        events.append({"frames": [lo, hi], "avatar_shut": bool(len(shut)), "lag_frames": lag,
                       "avatar_min_level": float(np.nanmin(an[lo:hi])) if hi > lo else None})
    hit = [e for e in events if e["avatar_shut"]]
    return {"driver_blinks": len(events), "recalled": len(hit),
            "recall": (len(hit) / len(events)) if events else None,
            "max_lag_frames": max((abs(e["lag_frames"]) for e in hit), default=None), "events": events}


def wink(closed_eye: tuple[np.ndarray, np.ndarray], other_eye: tuple[np.ndarray, np.ndarray],
         frames: tuple[int, int]) -> dict:
    """A one-eyed closure over ``frames``: the closed eye's blink result and how far the avatar's
    other eye dropped, as a share of its range (its open height minus its clip minimum)."""
    lo, hi = frames
    blink = blinks(*closed_eye)
    d_other, a_other = (np.asarray(x, float) for x in other_eye)
    open_a = np.nanpercentile(a_other, 90)
    rng = max(open_a - np.nanmin(a_other), 1e-9)
    during = a_other[lo:hi]
    before = np.r_[a_other[max(0, lo - 10):lo], a_other[hi:hi + 10]]
    ref = np.nanmedian(before) if np.isfinite(before).any() else open_a
    drop = float((ref - np.nanmin(during)) / rng) if np.isfinite(during).any() else float("nan")
    return {"closed_eye": blink, "other_eye_drop": drop, "other_eye_ok": bool(drop <= WINK_OTHER_MAX)}
