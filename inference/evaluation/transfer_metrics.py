"""Does the expression arrive? Agreement between a driver's and an avatar's expression signals.

Driver and avatar are different faces, so absolute signal values never match: a wide mouth on one
person is a modest one on another. Every metric therefore compares the *shape* of the two time
series: Pearson r (invariant to gain and offset), MAE after normalising each series to its own
robust range, the lag that maximises their cross-correlation, and jitter where the driver holds
still (the avatar should too).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SignalAgreement:
    name: str
    pearson_r: float
    nmae: float  # mean |a - d| with both normalised to their 5-95 % range; 0 = identical shape
    lag_frames: int  # > 0: the avatar follows the driver this many frames late
    driver_range: float
    avatar_range: float

    def as_dict(self) -> dict:
        return asdict(self)


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = np.asarray(a, np.float64) - np.mean(a)
    b = np.asarray(b, np.float64) - np.mean(b)
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else 0.0


def robust_normalise(x: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(x, [5, 95])
    return (np.asarray(x, np.float64) - lo) / (hi - lo) if hi > lo else np.zeros(len(x))


def best_lag(driver: np.ndarray, avatar: np.ndarray, max_lag: int) -> int:
    """The shift k maximising corr(driver[t], avatar[t + k]); positive k means avatar is late."""
    best_k, best_r = 0, -np.inf
    n = len(driver)
    for k in range(-max_lag, max_lag + 1):
        if k >= 0:
            d, a = driver[: n - k], avatar[k:]
        else:
            d, a = driver[-k:], avatar[: n + k]
        if len(d) < 8:
            continue
        r = pearson(d, a)
        if r > best_r + 1e-9:
            best_k, best_r = k, r
    return best_k


def agreement(name: str, driver: np.ndarray, avatar: np.ndarray, max_lag: int = 8) -> SignalAgreement:
    driver = np.asarray(driver, np.float64)
    avatar = np.asarray(avatar, np.float64)
    if driver.shape != avatar.shape or driver.ndim != 1:
        raise ValueError(f"{name}: series must be 1-D and equally long, got {driver.shape} and {avatar.shape}")
    return SignalAgreement(
        name=name,
        pearson_r=pearson(driver, avatar),
        nmae=float(np.mean(np.abs(robust_normalise(driver) - robust_normalise(avatar)))),
        lag_frames=best_lag(driver, avatar, max_lag),
        driver_range=float(np.ptp(driver)),
        avatar_range=float(np.ptp(avatar)),
    )


def still_mask(driver: np.ndarray, window: int = 9, quantile: float = 0.25) -> np.ndarray:
    """Frames where the driver barely moves: rolling spread of all signals in the lowest quartile."""
    x = np.apply_along_axis(robust_normalise, 0, np.asarray(driver, np.float64))
    n = len(x)
    half = window // 2
    spread = np.array([x[max(0, i - half): i + half + 1].std(axis=0).mean() for i in range(n)])
    return spread <= np.quantile(spread, quantile)


def jitter(avatar: np.ndarray, mask: np.ndarray) -> float:
    """RMS frame-to-frame change of the normalised avatar signals on the masked (still) frames."""
    x = np.apply_along_axis(robust_normalise, 0, np.asarray(avatar, np.float64))
    d = np.diff(x, axis=0)
    m = mask[1:] & mask[:-1]
    return float(np.sqrt(np.mean(d[m] ** 2))) if m.any() else float("nan")
