"""A capture node's PUB socket: one encoded frame per message, never blocking.

ZeroMQ's PUB drops messages silently once a peer's queue is at its high-water mark, so the
sender cannot count those drops; the receiver does, from gaps in the sequence numbers.
``dropped`` only counts sends the socket refused outright (rare: e.g. during shutdown).

The small HWM assumes frames come at camera rates: a PUB socket learns that its peer has read
messages only when it next processes its commands (libzmq throttles that to about once a
millisecond), so sends less than a millisecond apart can find the pipe "full" at one message in
flight and drop (measured here with HWM 8: every 4th of back-to-back sends; none at 100 Hz).

One publisher may be shared by threads (several ecosystem adapters, a stream's end-of-stream sent
from another thread): a ZeroMQ socket is not thread-safe, so each multipart send holds a lock.
Without it three adapter threads on one publisher interleaved their frames' parts — 47 of 216
messages reached the receiver with the wrong part count and were dropped as malformed.
"""
from __future__ import annotations

import threading
import time

import zmq

from streaming import protocol
from streaming.sockets import CurveClient, CurveServer, SocketOptions, open_socket

# Small high-water marks: a frame that cannot be delivered at once is stale by the next one, so it
# is dropped rather than queued (queued frames are the latency creep users complain about).
DEFAULT_HWM = 8


class Publisher:
    def __init__(
        self,
        endpoint: str,
        *,
        bind: bool = False,
        curve_client: CurveClient | None = None,
        curve_server: CurveServer | None = None,
        insecure: bool = False,
        hwm: int = DEFAULT_HWM,
        context: zmq.Context | None = None,
    ):
        self._socket = open_socket(zmq.PUB, endpoint, bind=bind, curve_client=curve_client,
                                   curve_server=curve_server if bind else None, insecure=insecure,
                                   options=SocketOptions(linger_ms=200, sndhwm=hwm), context=context)
        self.ctx = self._socket.ctx
        self.sock = self._socket.sock
        self.endpoint = self._socket.endpoint
        self.sent = 0
        self.dropped = 0
        self._send_lock = threading.Lock()
        # A connecting publisher learns from its handshakes whether the peer accepted it at all
        # (PUB itself never says: a refused one drops every frame silently).
        self.handshake = None if bind else self._socket.handshake_monitor()

    def send(self, frame: protocol.FeatureFrame, t_send_ns: int | None = None) -> bool:
        parts = protocol.encode(frame, time.monotonic_ns() if t_send_ns is None else t_send_ns)
        return self.send_parts(parts)

    def send_parts(self, parts: list[bytes]) -> bool:
        with self._send_lock:
            try:
                self.sock.send_multipart(parts, flags=zmq.NOBLOCK, copy=True)
                self.sent += 1
                return True
            except zmq.Again:
                self.dropped += 1
                return False

    def close(self) -> None:
        # Lingers 200 ms: the end-of-stream frame sent just before close should still leave.
        with self._send_lock:
            self._socket.close()

    def __enter__(self) -> "Publisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


__all__ = ["Publisher", "DEFAULT_HWM"]
