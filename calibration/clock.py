"""Clock offset and drift between two hosts from NTP-style exchanges.

One exchange gives four times: t1 local send, t2 remote receive, t3 remote send, t4 local
receive (each host's own monotonic clock, int64 ns). Its offset estimate
``((t2 - t1) + (t3 - t4)) / 2`` is wrong by half the path asymmetry, and the asymmetry is largest
when a packet waited in a queue, so only the exchanges with the smallest round-trip delay are
trusted. Drift (the two crystals running at slightly different rates) is the slope of those
trusted offsets over time.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exchange:
    t1: int  # local send
    t2: int  # remote receive
    t3: int  # remote send
    t4: int  # local receive

    @property
    def delay_ns(self) -> int:
        return (self.t4 - self.t1) - (self.t3 - self.t2)

    @property
    def offset_ns(self) -> float:
        """remote − local."""
        return ((self.t2 - self.t1) + (self.t3 - self.t4)) / 2.0


@dataclass(frozen=True)
class ClockMapping:
    """``remote = local + offset_ns + drift * (local - ref_local_ns)``."""

    offset_ns: float
    drift: float  # dimensionless rate difference (1e-6 = 1 ppm)
    ref_local_ns: int
    samples: int
    min_delay_ns: int
    uncertainty_ns: float  # half the smallest round trip: the worst case for any asymmetry

    def to_remote(self, t_local_ns: int) -> int:
        return int(round(t_local_ns + self.offset_ns + self.drift * (t_local_ns - self.ref_local_ns)))

    def to_local(self, t_remote_ns: int) -> int:
        # Inverse of to_remote (drift is tiny, so one fixed-point step is exact to < 1 ns).
        guess = t_remote_ns - self.offset_ns
        return int(round(t_remote_ns - self.offset_ns - self.drift * (guess - self.ref_local_ns)))

    @property
    def drift_ppm(self) -> float:
        return self.drift * 1e6

    def as_dict(self) -> dict:
        return {"offset_ns": self.offset_ns, "drift_ppm": self.drift_ppm, "ref_local_ns": self.ref_local_ns,
                "samples": self.samples, "min_delay_ns": self.min_delay_ns, "uncertainty_ns": self.uncertainty_ns}


@dataclass(frozen=True)
class EstimatorConfig:
    max_samples: int = 4096
    best_fraction: float = 0.2  # of the exchanges in each time bucket, the lowest-delay share is trusted
    buckets: int = 16  # drift fit uses one trusted offset per bucket of time
    min_span_for_drift_s: float = 2.0  # below this the slope is noise; drift is reported as 0


class ClockEstimator:
    def __init__(self, config: EstimatorConfig = EstimatorConfig()):
        self.config = config
        self._samples: collections.deque[Exchange] = collections.deque(maxlen=config.max_samples)

    def add(self, ex: Exchange) -> None:
        if ex.t4 < ex.t1 or ex.t3 < ex.t2 or ex.delay_ns < 0:
            return  # impossible timings (clock stepped, corrupted reply): ignore
        self._samples.append(ex)

    def __len__(self) -> int:
        return len(self._samples)

    def estimate(self) -> ClockMapping | None:
        if not self._samples:
            return None
        cfg = self.config
        s = list(self._samples)
        t_local = np.array([(e.t1 + e.t4) // 2 for e in s], dtype=np.int64)
        delay = np.array([e.delay_ns for e in s], dtype=np.float64)
        offset = np.array([e.offset_ns for e in s], dtype=np.float64)
        span_s = (t_local.max() - t_local.min()) / 1e9
        ref = int(t_local.max())
        n_buckets = cfg.buckets if span_s >= cfg.min_span_for_drift_s and len(s) >= 4 * cfg.buckets else 1
        edges = np.linspace(t_local.min(), t_local.max() + 1, n_buckets + 1)
        xs, ys = [], []
        for lo, hi in zip(edges[:-1], edges[1:]):
            idx = np.nonzero((t_local >= lo) & (t_local < hi))[0]
            if idx.size == 0:
                continue
            k = max(1, int(round(idx.size * cfg.best_fraction)))
            best = idx[np.argsort(delay[idx])[:k]]
            xs.append(float(np.mean(t_local[best] - ref)))
            ys.append(float(np.median(offset[best])))
        xs_a, ys_a = np.array(xs), np.array(ys)
        if len(xs) >= 3:
            drift, intercept = np.polyfit(xs_a, ys_a, 1)  # offset at ref = intercept (x measured from ref)
        else:
            drift, intercept = 0.0, float(np.mean(ys_a))
        min_delay = int(delay.min())
        return ClockMapping(float(intercept), float(drift), ref, len(s), min_delay, min_delay / 2.0)


def through_common_clock(peer_to_common: ClockMapping, local_to_common: ClockMapping) -> ClockMapping:
    """peer → local for two hosts that each know their mapping onto a third clock (a room's):
    ``local = local_to_common⁻¹(peer_to_common(peer))``, linearised at the peer's reference time.
    The uncertainties add (each half round trip bounds its own asymmetry)."""
    ref = peer_to_common.ref_local_ns
    at_ref = local_to_common.to_local(peer_to_common.to_remote(ref))
    drift = (1 + peer_to_common.drift) / (1 + local_to_common.drift) - 1
    return ClockMapping(offset_ns=float(at_ref - ref), drift=drift, ref_local_ns=ref,
                        samples=min(peer_to_common.samples, local_to_common.samples),
                        min_delay_ns=max(peer_to_common.min_delay_ns, local_to_common.min_delay_ns),
                        uncertainty_ns=peer_to_common.uncertainty_ns + local_to_common.uncertainty_ns)
