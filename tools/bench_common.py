"""Helpers every benchmark shares: percentile summaries and atomic JSON output."""
from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np


def percentiles(values_ms) -> dict:
    a = np.asarray(values_ms, dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan"), "mean": float("nan")}
    return {
        "n": int(a.size),
        "p50": float(np.percentile(a, 50)),
        "p95": float(np.percentile(a, 95)),
        "p99": float(np.percentile(a, 99)),
        "max": float(a.max()),
        "mean": float(a.mean()),
    }


def machine_info() -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, data: dict) -> None:
    """Atomic: a crash mid-write never leaves a truncated results file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    data = {**data, "machine": machine_info()}
    tmp.write_text(json.dumps(data, indent=2, allow_nan=True))
    os.replace(tmp, path)
