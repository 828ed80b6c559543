"""The stages' progress bars (stderr; the per-stage summary lines go to the build's log)."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress(total: int, desc: str, unit: str = "f") -> tqdm:
    """A stage's progress bar on stderr; redrawn at most every 2 s when stderr is a log file."""
    return tqdm(total=total, desc=f"{desc:<9}", unit=unit, leave=False, dynamic_ncols=True,
                mininterval=0.1 if sys.stderr.isatty() else 2.0)
