"""Turning Ctrl-C / SIGTERM into a stop request for a render loop, for the duration of a block.

The frame loop must not die between xrBeginFrame and xrEndFrame or with swapchain images
acquired; instead the signal sets an Event that the loop checks once per frame, and the caller
then runs the orderly OpenXR shutdown (request exit → STOPPING → EXITING).
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator, Sequence


@contextmanager
def stop_event_on_signals(signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[threading.Event]:
    """Yield an Event that the given signals set; the previous handlers come back afterwards.

    A second signal while the event is already set falls back to the previous handler (so a
    second Ctrl-C still interrupts a loop that stopped responding). Main thread only.
    """
    stop = threading.Event()
    previous = {}

    def handler(signum, frame):
        if stop.is_set():
            # Second signal: behave as if we had never been installed.
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
            return
        stop.set()

    for signum in signals:
        previous[signum] = signal.signal(signum, handler)
    try:
        yield stop
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)
