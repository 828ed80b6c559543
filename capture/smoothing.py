"""Stillness: a One Euro filter per face region on the canonical landmarks, on the real frame times.

Measured on the sample man (issue 13): jitter on still segments was 0.045 on the avatar against
0.036 on the driver — the avatar was less still than its driver — while a blink takes 2-3 frames
from open to shut. One fixed low-pass cannot serve both, and one filter for the whole face cannot
either: a blink must pass in one frame while brows and cheeks, which never move that fast, can be
held very still. The One Euro filter (Casiez et al., CHI 2012) adapts its cutoff to speed:
``cutoff = min_cutoff + beta · |speed|``, so still stretches are smoothed hard and fast motion
passes almost unfiltered. Here one speed per region (RMS over its points, IOD/s) sets one cutoff
for all its points, which keeps each region's shape coherent, and dt comes from the capture
timestamps, so a 15 fps camera is filtered like a 30 fps one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from calibration.expression_range import (
    BROW_POINTS,
    LEFT_LOWER_LID,
    LEFT_UPPER_LID,
    MOUTH_POINTS,
    RIGHT_LOWER_LID,
    RIGHT_UPPER_LID,
)

IRIS_POINTS = tuple(range(468, 478))


@dataclass(frozen=True)
class RegionFilter:
    min_cutoff_hz: float
    beta: float  # Hz per (IOD/s)
    d_cutoff_hz: float = 5.0


@dataclass(frozen=True)
class SmoothingConfig:
    enabled: bool = True
    # Tuned on the sample clips (docs/ANIMATION.md §6): lids and irises nearly unfiltered in motion,
    # mouth in between, the rest (brows, cheeks, jaw outline) held hardest.
    lids: RegionFilter = RegionFilter(3.0, 40.0)
    irises: RegionFilter = RegionFilter(3.0, 40.0)
    mouth: RegionFilter = RegionFilter(2.5, 15.0)
    brows: RegionFilter = RegionFilter(1.0, 8.0)
    rest: RegionFilter = RegionFilter(1.0, 8.0)
    max_gap_s: float = 0.3  # a longer gap (face lost) restarts the filter


def _alpha(cutoff_hz, dt: float):
    tau = 1.0 / (2 * math.pi * np.asarray(cutoff_hz, np.float64))
    return 1.0 / (1.0 + tau / dt)


class RegionSmoother:
    def __init__(self, config: SmoothingConfig = SmoothingConfig()):
        self.config = config
        lids = RIGHT_UPPER_LID + RIGHT_LOWER_LID + LEFT_UPPER_LID + LEFT_LOWER_LID
        region = np.full(478, 4, np.int64)  # rest
        region[list(BROW_POINTS)] = 3
        region[list(MOUTH_POINTS)] = 2
        region[list(IRIS_POINTS)] = 1
        region[list(lids)] = 0
        self._region = region
        filters = (config.lids, config.irises, config.mouth, config.brows, config.rest)
        self._min = np.array([f.min_cutoff_hz for f in filters])
        self._beta = np.array([f.beta for f in filters])
        self._dcut = np.array([f.d_cutoff_hz for f in filters])
        self.reset()

    def reset(self) -> None:
        self._x: np.ndarray | None = None
        self._speed = np.zeros(5)
        self._t: float | None = None

    def __call__(self, canonical: np.ndarray, t_s: float) -> np.ndarray:
        x = np.asarray(canonical, np.float64)
        if not self.config.enabled:
            return x.astype(np.float32)
        if self._x is None or self._t is None or not (0 < t_s - self._t <= self.config.max_gap_s):
            same = self._t is not None and t_s == self._t and self._x is not None
            if not same:
                self._x, self._t, self._speed = x.copy(), t_s, np.zeros(5)
            return self._x.astype(np.float32)
        dt = t_s - self._t
        v = np.linalg.norm(x - self._x, axis=-1) / dt  # (478,) IOD/s
        speed = np.sqrt(np.bincount(self._region, v * v, minlength=5) / np.bincount(self._region, minlength=5))
        a_d = _alpha(self._dcut, dt)
        self._speed = self._speed + a_d * (speed - self._speed)
        a = _alpha(self._min + self._beta * self._speed, dt)[self._region][:, None]
        self._x = self._x + a * (x - self._x)
        self._t = t_s
        return self._x.astype(np.float32)
