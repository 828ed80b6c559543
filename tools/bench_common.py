"""What every benchmark shares: the machine it ran on, and atomic JSON output."""
from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from core.atomic_files import atomic_write_json


def machine_info() -> dict:
    return {"host": platform.node(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_json(path: Path, data: dict) -> None:
    """Atomic (core.atomic_files): a crash mid-write never leaves a truncated results file."""
    atomic_write_json(path, {**data, "machine": machine_info()}, allow_nan=True)
