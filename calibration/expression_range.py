"""Per-driver expression range: how far *this* driver moves each feature, learned online.

mp478 features are "face − own neutral", so identity is gone but *amplitude* is not: a driver with
small eyes closes them by a smaller lid distance, a subtle smiler moves the mouth corners less, and
the avatar then only ever shows part of its range (issue 13: the sample man's blink arrived as a
slight narrowing on the woman's avatar). Face trackers users like (OpenSeeFace, VRCFaceTracking)
calibrate each parameter to the user's observed extremes; this does the same, robustly:

* **Signals** per region, in each face's own units: closure fraction of each eye (1 − opening /
  the neutral's opening; 1 = lids together), inner-lip gap, mouth-corner widening and brow raise
  relative to the neutral (IOD units).
* **Range** = a high quantile (``quantile``) of each signal over a sliding ``window_s`` of face,
  sub-sampled in time (frame-rate independent). A single outlier frame (a hand, a tracker glitch)
  cannot move a 98th percentile; a range only counts once it has ``min_samples`` and the signal
  has actually gone past ``evidence`` × the reference (before that: the prior).
* **Gain** per region = reference / range, clipped to [1, ``max_gain``] for mouth and brows (boost
  subtle drivers, never damp expressive ones), and for the eyes the exact factor that maps this
  driver's full closure onto the standard lid gap ``EYE_GAP_STD`` — so the render side can read a
  closure fraction off the features without knowing the driver's eye size.

The gains multiply the feature displacements of each region's landmarks (capture side, before
sending); ``ranges`` is what is saved with the neutral and shown by ``headcast listen``.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np

from geometry.facemesh_eyes import (
    EYE_GAP_STD,
    LEFT_CORNERS,
    LEFT_LOWER_LID,
    LEFT_UPPER_LID,
    RIGHT_CORNERS,
    RIGHT_LOWER_LID,
    RIGHT_UPPER_LID,
    lid_gap,
)

MOUTH_POINTS = (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,
                267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415)
BROW_POINTS = (70, 63, 105, 66, 107, 55, 65, 52, 53, 46, 300, 293, 334, 296, 336, 285, 295, 282, 283, 276)
SIGNALS = ("eye_close_right", "eye_close_left", "mouth_open", "smile", "brow_raise")


def region_signals(canonical: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """The five signals of one canonical shape against its neutral (see module docstring)."""
    c, n = np.asarray(canonical, np.float64), np.asarray(neutral, np.float64)
    out = []
    for up, lo in ((RIGHT_UPPER_LID, RIGHT_LOWER_LID), (LEFT_UPPER_LID, LEFT_LOWER_LID)):
        g0 = max(lid_gap(n, up, lo), 1e-3)
        out.append(1.0 - lid_gap(c, up, lo) / g0)
    out.append(abs(c[13, 1] - c[14, 1]) - abs(n[13, 1] - n[14, 1]))
    out.append(np.linalg.norm(c[61] - c[291]) - np.linalg.norm(n[61] - n[291]))
    brow = lambda p: p[list(BROW_POINTS[:5] + BROW_POINTS[10:15]), 1].mean() - p[list(RIGHT_CORNERS + LEFT_CORNERS), 1].mean()
    out.append(brow(c) - brow(n))
    return np.array(out)


@dataclass(frozen=True)
class ExpressionRangeConfig:
    window_s: float = 60.0
    sample_period_s: float = 1 / 30
    quantile: float = 0.98
    min_samples: int = 30  # ~1 s of face before a learned range counts
    recompute_s: float = 0.5
    # reference full range per signal (eye: closure fraction; others IOD units) and the prior used
    # until the driver has shown one
    reference: dict = field(default_factory=lambda: {"eye_close_right": 0.9, "eye_close_left": 0.9,
                                                     "mouth_open": 0.25, "smile": 0.30, "brow_raise": 0.05})
    evidence: float = 0.4  # a learned range counts once the signal reached this share of the reference
    max_gain: float = 1.6  # mouth / brows: at most this boost
    max_eye_gain: float = 2.0
    eye_range_floor: float = 0.6  # a driver whose tracker never closes past 60 % still reaches 100 %


class ExpressionRange:
    """Learns the driver's range per signal and turns it into per-region gains."""

    def __init__(self, config: ExpressionRangeConfig = ExpressionRangeConfig(), ranges: dict | None = None):
        self.config = config
        self._t: deque[float] = deque()
        self._s: deque[np.ndarray] = deque()
        self._last: float | None = None
        self._ranges = dict(config.reference)
        self._learned = {k: False for k in SIGNALS}
        if ranges:  # a saved calibration: starts there, keeps learning
            for k, v in ranges.items():
                if k in self._ranges and np.isfinite(v) and v > 0:
                    self._ranges[k], self._learned[k] = float(v), True
        self._eye_gap = {"right": EYE_GAP_STD, "left": EYE_GAP_STD}

    @property
    def ranges(self) -> dict:
        return dict(self._ranges)

    @property
    def learned(self) -> dict:
        return dict(self._learned)

    def reset(self) -> None:
        """Forget the window (the neutral changed: old signals were measured against another face)."""
        self._t.clear(), self._s.clear()

    def update(self, canonical: np.ndarray, neutral: np.ndarray, t_s: float) -> np.ndarray:
        cfg = self.config
        s = region_signals(canonical, neutral)
        self._eye_gap = {"right": max(lid_gap(neutral, RIGHT_UPPER_LID, RIGHT_LOWER_LID), 1e-3),
                         "left": max(lid_gap(neutral, LEFT_UPPER_LID, LEFT_LOWER_LID), 1e-3)}
        if not np.isfinite(s).all():
            return s
        if not self._t or t_s - self._t[-1] >= 0.95 * cfg.sample_period_s or t_s < self._t[-1]:
            self._t.append(t_s)
            self._s.append(s)
            while self._t and self._t[0] < t_s - cfg.window_s:
                self._t.popleft(), self._s.popleft()
        if self._last is None or t_s - self._last >= cfg.recompute_s or t_s < self._last:
            self._last = t_s
            self._learn()
        return s

    def _learn(self) -> None:
        cfg = self.config
        if len(self._s) < cfg.min_samples:
            return
        arr = np.array(self._s)
        q = np.quantile(arr, cfg.quantile, axis=0)
        for k, name in enumerate(SIGNALS):
            ref = cfg.reference[name]
            if q[k] >= cfg.evidence * ref:
                self._ranges[name], self._learned[name] = float(q[k]), True

    def gains(self) -> dict:
        """Per-region multipliers of the feature displacements."""
        cfg, r = self.config, self._ranges
        g = {}
        for side, name in (("right", "eye_close_right"), ("left", "eye_close_left")):
            q = max(r[name], cfg.eye_range_floor)
            # his closure of q × his own gap becomes EYE_GAP_STD: reaching his range = full closure
            g[f"eye_{side}"] = float(np.clip(EYE_GAP_STD * (1.0 / q) / self._eye_gap[side], 0.5, cfg.max_eye_gain))
        mouth = min(cfg.reference["mouth_open"] / max(r["mouth_open"], 1e-6),
                    cfg.reference["smile"] / max(r["smile"], 1e-6))
        g["mouth"] = float(np.clip(mouth, 1.0, cfg.max_gain))
        g["brows"] = float(np.clip(cfg.reference["brow_raise"] / max(r["brow_raise"], 1e-6), 1.0, cfg.max_gain))
        return g

    def apply(self, features: np.ndarray) -> np.ndarray:
        """Scales each region's feature displacements by its gain (returns a new array)."""
        out = np.array(features, np.float32, copy=True)
        g = self.gains()
        out[list(RIGHT_UPPER_LID + RIGHT_LOWER_LID)] *= g["eye_right"]
        out[list(LEFT_UPPER_LID + LEFT_LOWER_LID)] *= g["eye_left"]
        out[list(MOUTH_POINTS)] *= g["mouth"]
        out[list(BROW_POINTS)] *= g["brows"]
        return out
