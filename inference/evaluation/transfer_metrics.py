"""Does the expression arrive? Agreement between a driver's and an avatar's expression signals.

Driver and avatar are different faces, so absolute signal values never match: a wide mouth on one
person is a modest one on another. Every metric therefore compares the *shape* of the two time
series: Pearson r (invariant to gain and offset), MAE after normalising each series to its own
robust range, the lag that maximises their cross-correlation, and jitter where the driver holds
still (the avatar should too).

Scored frames may come in several segments (held-out blocks of a clip): ``segments`` gives each
frame's segment id; lags and frame-to-frame differences then never pair frames across a border,
while r and nMAE pool all frames (between-segment differences are expression changes too).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


# A lag needs motion to time: the driver's within-segment spread must be at least this share of its
# whole range (her mouth inside each held-out block moves by tracker jitter only, ~2 % of its range),
# and the peak correlation of the segment-centred series at least LAG_MIN_CORRELATION (else the
# avatar does not share that motion).
LAG_MIN_MOTION = 0.05
LAG_MIN_CORRELATION = 0.5


@dataclass(frozen=True)
class SignalAgreement:
    name: str
    pearson_r: float
    nmae: float  # mean |a - d| with both normalised to their 5-95 % range; 0 = identical shape
    lag_frames: int | None  # > 0: the avatar follows the driver this many frames late; None: no motion
    # to time (see LAG_MIN_MOTION / LAG_MIN_CORRELATION)
    lag_correlation: float  # the within-segment correlation at that lag
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


def _segment_bounds(n: int, segments: np.ndarray | None) -> list[tuple[int, int]]:
    if segments is None:
        return [(0, n)]
    seg = np.asarray(segments)
    if seg.shape != (n,):
        raise ValueError(f"segments must have shape ({n},), got {seg.shape}")
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    return list(zip(starts.tolist(), np.r_[starts[1:], n].tolist()))


def lag_correlation(driver: np.ndarray, avatar: np.ndarray, max_lag: int,
                    segments: np.ndarray | None = None) -> tuple[int, float]:
    """(k, r): the shift k maximising corr(driver[t], avatar[t + k]) and that correlation; positive
    k means the avatar is late.

    Each segment is centred on its own means first and pairs (t, t + k) never cross a segment
    border, so only motion *within* segments times the lag: with several held-out blocks, the level
    differences between blocks (which no shift changes) would otherwise decide the peak."""
    best_k, best_r = 0, -np.inf
    bounds = _segment_bounds(len(driver), segments)
    centred = [(driver[lo:hi] - np.mean(driver[lo:hi]), avatar[lo:hi] - np.mean(avatar[lo:hi])) for lo, hi in bounds]
    for k in range(-max_lag, max_lag + 1):
        ds, as_ = [], []
        for dd, aa in centred:
            m = len(dd)
            if abs(k) >= m:
                continue
            ds.append(dd[: m - k] if k >= 0 else dd[-k:])
            as_.append(aa[k:] if k >= 0 else aa[: m + k])
        if not ds or sum(len(d) for d in ds) < 8:
            continue
        d, a = np.concatenate(ds), np.concatenate(as_)
        den = np.sqrt((d * d).sum() * (a * a).sum())
        r = float((d * a).sum() / den) if den > 0 else 0.0
        if r > best_r + 1e-9:
            best_k, best_r = k, r
    return best_k, float(best_r)


def within_spread(x: np.ndarray, segments: np.ndarray | None = None) -> float:
    """RMS deviation of ``x`` from its own segment means (its motion inside segments)."""
    x = np.asarray(x, np.float64)
    parts = [x[lo:hi] - x[lo:hi].mean() for lo, hi in _segment_bounds(len(x), segments)]
    return float(np.sqrt(np.mean(np.concatenate(parts) ** 2))) if len(x) else 0.0


def best_lag(driver: np.ndarray, avatar: np.ndarray, max_lag: int, segments: np.ndarray | None = None) -> int:
    return lag_correlation(driver, avatar, max_lag, segments)[0]


def agreement(name: str, driver: np.ndarray, avatar: np.ndarray, max_lag: int = 8,
              segments: np.ndarray | None = None) -> SignalAgreement:
    driver = np.asarray(driver, np.float64)
    avatar = np.asarray(avatar, np.float64)
    if driver.shape != avatar.shape or driver.ndim != 1:
        raise ValueError(f"{name}: series must be 1-D and equally long, got {driver.shape} and {avatar.shape}")
    lag, lag_r = lag_correlation(driver, avatar, max_lag, segments)
    measurable = lag_r >= LAG_MIN_CORRELATION and within_spread(driver, segments) >= LAG_MIN_MOTION * np.ptp(driver)
    return SignalAgreement(
        name=name,
        pearson_r=pearson(driver, avatar),
        nmae=float(np.mean(np.abs(robust_normalise(driver) - robust_normalise(avatar)))),
        lag_frames=lag if measurable else None,
        lag_correlation=lag_r,
        driver_range=float(np.ptp(driver)),
        avatar_range=float(np.ptp(avatar)),
    )


def still_mask(driver: np.ndarray, window: int = 9, quantile: float = 0.25,
               segments: np.ndarray | None = None) -> np.ndarray:
    """Frames where the driver barely moves: rolling spread of all signals in the lowest quartile
    (the rolling window stays inside each segment)."""
    x = np.apply_along_axis(robust_normalise, 0, np.asarray(driver, np.float64))
    half = window // 2
    spread = np.zeros(len(x))
    for lo, hi in _segment_bounds(len(x), segments):
        for i in range(lo, hi):
            spread[i] = x[max(lo, i - half): min(hi, i + half + 1)].std(axis=0).mean()
    return spread <= np.quantile(spread, quantile)


def jitter(avatar: np.ndarray, mask: np.ndarray, segments: np.ndarray | None = None) -> float:
    """RMS frame-to-frame change of the normalised avatar signals on the masked (still) frames,
    never across a segment border."""
    x = np.apply_along_axis(robust_normalise, 0, np.asarray(avatar, np.float64))
    d = np.diff(x, axis=0)
    m = mask[1:] & mask[:-1]
    if segments is not None:
        seg = np.asarray(segments)
        m = m & (seg[1:] == seg[:-1])
    return float(np.sqrt(np.mean(d[m] ** 2))) if m.any() else float("nan")
