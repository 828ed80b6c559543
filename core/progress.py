"""Progress bars for the long steps a user waits on (avatar builds, evaluation, benchmarks), one
look everywhere: tqdm on stderr, gone when the step ends (the step prints its own result line).
Only on a terminal: in a log file a bar is a growing line of carriage-return redraws (seen in CI
and in `make demo > log`), so there the steps' own result lines are all that is written.

    with progress_bar(total=n, desc="track") as bar:
        for ...: bar.update(1)
    with seconds_bar(30, "session"):          # a wait with nothing to count: elapsed time
        run_something_for_30_seconds()
    with writes_above_bars(): print(...)      # a line that must not tear a bar
"""
from __future__ import annotations

import contextlib
import sys
import threading
import time
from typing import Iterator

from tqdm import tqdm


def progress_bar(total: int | None = None, desc: str = "", unit: str = "f", position: int | None = None) -> tqdm:
    return tqdm(total=total, desc=f"{desc:<9}", unit=unit, leave=False, dynamic_ncols=True, position=position,
                mininterval=0.1, disable=not sys.stderr.isatty())


def callback(bar: tqdm):
    """`progress(done, total)` callbacks (total may be None or change) onto a bar."""

    def update(done: int, total: int | None = None) -> None:
        if total and bar.total != total:
            bar.total = total
            bar.refresh()
        bar.update(max(0, done - bar.n))

    return update


@contextlib.contextmanager
def seconds_bar(seconds: float, desc: str) -> Iterator[tqdm]:
    """A bar over elapsed wall time, advanced by a thread while the block runs."""
    bar = progress_bar(total=round(seconds), desc=desc, unit="s")
    stop = threading.Event()
    t0 = time.monotonic()

    def tick() -> None:
        while not stop.wait(0.5):
            bar.update(min(bar.total, int(time.monotonic() - t0)) - bar.n)

    thread = threading.Thread(target=tick, name="headcast-progress", daemon=True)
    thread.start()
    try:
        yield bar
    finally:
        stop.set()
        thread.join(timeout=1)
        bar.close()


def writes_above_bars():
    """A context in which prints do not tear the bars (tqdm clears and redraws them)."""
    return tqdm.external_write_mode()


__all__ = ["callback", "progress_bar", "seconds_bar", "writes_above_bars"]
