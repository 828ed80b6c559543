"""One summary of a sample of timings (or any values): count, mean, percentiles, maximum.

Every table Headcast prints — capture stages, render stages, latency per stage, benchmarks —
uses this, so "p99" means the same thing everywhere (numpy's linear interpolation). An empty
sample gives ``n = 0`` and None for every statistic: JSON writes it as null, and a table prints a
dash, rather than a NaN that compares false with everything.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

DEFAULT_QUANTILES = (50, 95, 99)


def percentiles(values: Iterable[float | None], qs: Iterable[int] = DEFAULT_QUANTILES) -> dict:
    """{"n", "mean", "p<q>" for each q, "max"}; None values are left out of the sample."""
    qs = tuple(qs)
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "mean": None, **{f"p{q}": None for q in qs}, "max": None}
    ps = np.percentile(a, qs)
    return {"n": int(a.size), "mean": float(a.mean()), **{f"p{q}": float(p) for q, p in zip(qs, ps)},
            "max": float(a.max())}


__all__ = ["percentiles", "DEFAULT_QUANTILES"]
