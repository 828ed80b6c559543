"""Publishes a running render node's latency records so `headcast bench latency --attach` can
measure a live session without stopping it.

A thread sends, every half second, the rows recorded since its last message as one JSON message on
a ZeroMQ PUB socket (loopback unless the caller allows otherwise). Rows are only appended by the
render loop, so reading a slice of them from this thread is safe (`RecordCursor`, which the web
page reads through too).
"""
from __future__ import annotations

import json
import threading

import zmq

from streaming.transport import check_bind_policy
from xr_runtime.latency.recorder import LatencyRecorder, RecordCursor


class LatencyPublisher:
    def __init__(self, recorder: LatencyRecorder, endpoint: str, insecure: bool = False, period_s: float = 0.5):
        check_bind_policy(endpoint, None, insecure)
        self.recorder = recorder
        self._cursor = RecordCursor(recorder)
        self.period_s = period_s
        self._ctx = zmq.Context()
        self._sock = self._ctx.socket(zmq.PUB)
        self._sock.linger = 0
        self._sock.bind(endpoint)
        self.endpoint = self._sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headcast-latency-pub", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period_s):
            self.publish_new()

    def publish_new(self) -> int:
        columns = self._cursor.new_columns()
        count = len(columns["display"])
        if count:
            self._sock.send(json.dumps(columns).encode(), zmq.NOBLOCK)
        return count

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sock.close(0)
        self._ctx.term()
