"""The headless display's frames, published at the instant each is shown, as a camera would see
them (`streaming.frame_feed`): how `headcast bench glass` closes the optical loop without a camera.

A frame complete at submit is not on the glass until its vsync (`FramePacer.shown_at`); a small
thread holds it until then and publishes it, so the capture node reading the feed sees exactly
what a camera facing an ideal display would — never a frame before it is shown. The render loop
only copies the image into a one-slot mailbox: a frame not yet published when the next one comes
is replaced, like a camera that missed it.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from streaming.frame_feed import FrameFeedPublisher


class DisplayFeed:
    def __init__(self, endpoint: str, insecure: bool = False) -> None:
        self._publisher = FrameFeedPublisher(endpoint, insecure=insecure)
        self.endpoint = self._publisher.endpoint
        self._pending: tuple[np.ndarray, int, int] | None = None
        self._cv = threading.Condition()
        self._stop = False
        self.replaced = 0
        self._thread = threading.Thread(target=self._run, name="headcast-display-feed", daemon=True)
        self._thread.start()

    def shown(self, rgba_top_down: np.ndarray, index: int, shown_ns: int) -> None:
        """Render thread: the frame `index`, to be on the glass at `shown_ns`."""
        bgr = np.ascontiguousarray(rgba_top_down[..., 2::-1])
        with self._cv:
            self.replaced += self._pending is not None
            self._pending = (bgr, index, shown_ns)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending is not None or self._stop)
                if self._stop:
                    return
                image, index, shown_ns = self._pending
                self._pending = None
            delay = shown_ns - time.monotonic_ns()
            if delay > 0:
                time.sleep(delay / 1e9)
            self._publisher.send(image, index, shown_ns)

    @property
    def sent(self) -> int:
        return self._publisher.sent

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=2)
        self._publisher.close()
