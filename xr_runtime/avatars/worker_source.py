"""An `AvatarStateSource` whose states come from a producer function run on its own thread.

    source = WorkerStateSource(step, period_s=1/60)   # step() -> {stream_id: AvatarFrameState}
    source.start(); ...; source.stop()

The worker calls `step()` back to back (or at most every `period_s`) and publishes the newest
result per stream under a short lock; `latest` only reads that dictionary, so the render loop
never waits for inference. A step that raises is counted and logged once; the worker goes on.
This is where the streaming engine plugs in: `step` wraps `engine.step(receiver)` and converts
its states to `AvatarFrameState`.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Mapping

from xr_runtime.avatars.state import AvatarFrameState

log = logging.getLogger(__name__)


class WorkerStateSource:
    def __init__(self, step: Callable[[], Mapping[str, AvatarFrameState]], period_s: float = 0.0,
                 name: str = "avatar-states") -> None:
        self._step = step
        self._period_s = period_s
        self._latest: dict[str, AvatarFrameState] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.steps = 0
        self.errors = 0
        self.step_ms = 0.0

    def start(self) -> "WorkerStateSource":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.perf_counter()
            try:
                states = dict(self._step())
            except Exception as exc:  # keep producing; the render loop shows the last good state
                self.errors += 1
                if self.errors == 1:
                    log.exception("avatar state producer failed (further failures only counted): %s", exc)
                self._stop.wait(0.05)
                continue
            with self._lock:
                self._latest.update(states)
            self.steps += 1
            self.step_ms = (time.perf_counter() - t0) * 1e3
            rest = self._period_s - (time.perf_counter() - t0)
            if rest > 0:
                self._stop.wait(rest)

    def latest(self, stream_id: str, t_display_ns: int) -> AvatarFrameState | None:
        with self._lock:
            return self._latest.get(stream_id)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
