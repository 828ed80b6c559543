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
import time

import numpy as np
import zmq

from streaming.sockets import SocketOptions, open_socket
from xr_runtime.latency.recorder import COLUMNS, LatencyRecorder, RecordCursor


class LatencyPublisher:
    def __init__(self, recorder: LatencyRecorder, endpoint: str, insecure: bool = False, period_s: float = 0.5):
        self.recorder = recorder
        self._cursor = RecordCursor(recorder)
        self.period_s = period_s
        self._socket = open_socket(zmq.PUB, endpoint, bind=True, insecure=insecure, options=SocketOptions())
        self._sock = self._socket.sock
        self.endpoint = self._socket.endpoint
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
        self._socket.close()


def collect_published_latency(endpoint: str, seconds: float) -> dict[str, np.ndarray]:
    """A live render node's latency records published at `endpoint`, collected for `seconds`
    (`headcast bench latency --attach`). Messages that are not latency records are ignored."""
    cols: dict[str, list] = {}
    deadline = time.monotonic() + seconds
    with open_socket(zmq.SUB, endpoint, bind=False, options=SocketOptions(maxmsgsize=64 << 20, subscribe=b"")) as s:
        while (remaining := deadline - time.monotonic()) > 0:
            if not s.sock.poll(int(remaining * 1000) + 1):
                continue
            try:
                msg = json.loads(s.sock.recv())
                for name in COLUMNS:
                    cols.setdefault(name, []).extend(int(v) for v in msg[name])
            except (ValueError, KeyError, TypeError):
                continue  # not a latency message: ignore, keep listening
    return {name: np.asarray(cols.get(name, []), dtype=np.int64) for name in COLUMNS}

