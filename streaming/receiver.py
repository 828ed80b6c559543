"""The render node's feature receiver: a SUB socket drained by its own thread.

Per stream it keeps the newest frame plus a short history (the animation network's window). It
never queues stale frames (small HWM; the thread drains the socket continuously), counts what it
drops and what is malformed, marks a silent stream lost and resumes it when frames come back.
Callers read snapshots under a short lock: nothing here blocks the render loop.
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import zmq

from streaming import protocol
from streaming.sockets import DEFAULT_ENDPOINT, CurveClient, CurveServer, ManagedSocket, SocketOptions, open_socket

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReceiverConfig:
    endpoint: str = DEFAULT_ENDPOINT
    bind: bool = True  # render node binds; capture nodes connect (the reverse works too)
    history: int = 32  # frames kept per stream
    lost_after_s: float = 1.0  # silence after which a stream counts as lost
    curve_server: CurveServer | None = None  # when binding with CURVE
    curve_client: CurveClient | None = None  # when connecting to a CURVE-serving capture node
    insecure: bool = False  # allow binding a non-loopback address without CURVE
    rcvhwm: int = 64
    max_streams: int = 64  # a flood of distinct ids must not grow memory without bound
    allowed_streams: frozenset[str] | None = None  # None: any valid id
    poll_ms: int = 20


@dataclass(frozen=True)
class ReceivedFrame:
    frame: protocol.FeatureFrame
    t_receive_ns: int


@dataclass(frozen=True)
class StreamStatus:
    stream_id: str
    kind: str
    received: int  # frames accepted
    dropped: int  # frames that never arrived (sequence gaps)
    stale: int  # duplicates or out-of-order frames discarded
    restarts: int  # publisher restarted (sequence went back with newer timestamps)
    lost_events: int  # times the stream went silent past lost_after_s
    last_seq: int
    lost: bool
    rate_hz: float
    latest_age_s: float
    face_lost: bool
    end_of_stream: bool


@dataclass
class _StreamState:
    stream_id: str
    history: collections.deque
    arrivals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    received: int = 0
    dropped: int = 0
    stale: int = 0
    restarts: int = 0
    lost_events: int = 0
    last_seq: int = -1
    lost: bool = False


@runtime_checkable
class FrameSource(Protocol):
    """What a consumer of received frames reads (the engine): the `Receiver`, or a test's feed."""

    def window_received(self, stream_id: str, n: int) -> list[ReceivedFrame]: ...

    def snapshot(self) -> dict[str, StreamStatus]: ...


@runtime_checkable
class FrameArrivals(Protocol):
    """A frame source that can wake a consumer when a frame arrives (the `Receiver`)."""

    @property
    def generation(self) -> int: ...

    def wait_for_frame(self, after: int, timeout_s: float) -> int: ...


@dataclass(frozen=True)
class ReceiverCounters:
    messages: int  # all messages taken off the socket
    malformed: int  # failed protocol validation
    unknown_stream: int  # valid frames for ids not allowed, or beyond max_streams
    malformed_by_kind: dict[str, int]


class Receiver:
    def __init__(self, config: ReceiverConfig = ReceiverConfig()):
        if config.history < 1:
            raise ValueError("history must be >= 1")
        self.config = config
        self._lock = threading.Lock()
        # Consumers (the engine's worker) wait on this instead of polling: a frame that arrives
        # starts their step at once rather than at their next timer tick.
        self._arrived = threading.Condition(self._lock)
        self._generation = 0  # bumps with every accepted frame
        self._streams: dict[str, _StreamState] = {}
        self._messages = 0
        self._malformed = 0
        self._unknown = 0
        self._malformed_by_kind: collections.Counter = collections.Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._socket: ManagedSocket | None = None
        self._error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> "Receiver":
        cfg = self.config
        self._socket = open_socket(
            zmq.SUB, cfg.endpoint, bind=cfg.bind, curve_server=cfg.curve_server if cfg.bind else None,
            curve_client=None if cfg.bind else cfg.curve_client, insecure=cfg.insecure,
            # Oversized messages make ZeroMQ drop the peer's message before it reaches us.
            options=SocketOptions(rcvhwm=cfg.rcvhwm, maxmsgsize=protocol.MAX_MESSAGE_BYTES, subscribe=b""))
        self._thread = threading.Thread(target=self._run, name="headcast-receiver", daemon=True)
        self._thread.start()
        return self

    @property
    def bound_endpoint(self) -> str:
        """The endpoint actually bound (resolves tcp://127.0.0.1:* to the chosen port)."""
        if self._socket is None:
            raise RuntimeError("receiver not started")
        return self._socket.endpoint

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- receive thread ------------------------------------------------------------------------
    def _run(self) -> None:
        sock = self._socket.sock
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if poller.poll(self.config.poll_ms):
                    # Drain everything available so the newest frame is never behind older ones.
                    while True:
                        try:
                            parts = sock.recv_multipart(flags=zmq.NOBLOCK, copy=True)
                        except zmq.Again:
                            break
                        self._ingest(parts, time.monotonic_ns())
                self._update_lost(time.monotonic_ns())
        except zmq.ContextTerminated:
            pass
        except BaseException as exc:  # pragma: no cover - surfaced through .error
            log.exception("receiver thread died")
            self._error = exc

    def _ingest(self, parts: list[bytes], t_receive_ns: int) -> None:
        try:
            frame = protocol.decode(parts)
        except protocol.ProtocolError as exc:
            with self._lock:
                self._messages += 1
                self._malformed += 1
                self._malformed_by_kind[exc.kind.name] += 1
            return
        cfg = self.config
        with self._lock:
            self._messages += 1
            if cfg.allowed_streams is not None and frame.stream_id not in cfg.allowed_streams:
                self._unknown += 1
                return
            st = self._streams.get(frame.stream_id)
            if st is None:
                if len(self._streams) >= cfg.max_streams:
                    self._unknown += 1
                    return
                st = _StreamState(frame.stream_id, collections.deque(maxlen=cfg.history))
                self._streams[frame.stream_id] = st
            if st.last_seq >= 0 and frame.seq <= st.last_seq:
                newest = st.history[-1].frame if st.history else None
                if newest is not None and frame.t_capture_ns > newest.t_capture_ns:
                    st.restarts += 1  # the publisher came back with a fresh sequence
                    st.history.clear()
                else:
                    st.stale += 1
                    return
            elif st.last_seq >= 0:
                st.dropped += frame.seq - st.last_seq - 1
            if st.lost:
                st.lost = False
                log.info("stream %s resumed", frame.stream_id)
            st.last_seq = frame.seq
            st.received += 1
            st.history.append(ReceivedFrame(frame, t_receive_ns))
            st.arrivals.append(t_receive_ns)
            self._generation += 1
            self._arrived.notify_all()

    def _update_lost(self, now_ns: int) -> None:
        limit = int(self.config.lost_after_s * 1e9)
        with self._lock:
            for st in self._streams.values():
                if not st.lost and st.arrivals and now_ns - st.arrivals[-1] > limit:
                    st.lost = True
                    st.lost_events += 1
                    log.info("stream %s lost (silent for %.1f s)", st.stream_id, self.config.lost_after_s)

    # -- caller API (non-blocking) -----------------------------------------------------------
    @property
    def error(self) -> BaseException | None:
        return self._error

    def stream_ids(self) -> list[str]:
        with self._lock:
            return sorted(self._streams)

    def latest(self, stream_id: str) -> protocol.FeatureFrame | None:
        with self._lock:
            st = self._streams.get(stream_id)
            return st.history[-1].frame if st and st.history else None

    def latest_received(self, stream_id: str) -> ReceivedFrame | None:
        with self._lock:
            st = self._streams.get(stream_id)
            return st.history[-1] if st and st.history else None

    def window(self, stream_id: str, n: int) -> list[protocol.FeatureFrame]:
        return [r.frame for r in self.window_received(stream_id, n)]

    def window_received(self, stream_id: str, n: int) -> list[ReceivedFrame]:
        with self._lock:
            st = self._streams.get(stream_id)
            if st is None or n <= 0:
                return []
            hist = st.history
            return list(hist)[-n:]

    @property
    def generation(self) -> int:
        """Count of frames accepted so far (for `wait_for_frame`)."""
        with self._lock:
            return self._generation

    def wait_for_frame(self, after: int, timeout_s: float) -> int:
        """Block until a frame is accepted after generation `after`, or `timeout_s` passes;
        returns the generation then (equal to `after` on a timeout)."""
        with self._arrived:
            self._arrived.wait_for(lambda: self._generation != after, timeout=max(0.0, timeout_s))
            return self._generation

    @property
    def counters(self) -> ReceiverCounters:
        with self._lock:
            return ReceiverCounters(self._messages, self._malformed, self._unknown, dict(self._malformed_by_kind))

    def snapshot(self) -> dict[str, StreamStatus]:
        now = time.monotonic_ns()
        out = {}
        with self._lock:
            for sid, st in self._streams.items():
                newest = st.history[-1] if st.history else None
                recent = [t for t in st.arrivals if now - t <= 1_000_000_000]
                if len(recent) >= 2 and recent[-1] > recent[0]:
                    rate = (len(recent) - 1) * 1e9 / (recent[-1] - recent[0])
                else:
                    rate = 0.0
                age = (now - newest.t_receive_ns) / 1e9 if newest else float("inf")
                out[sid] = StreamStatus(
                    stream_id=sid,
                    kind=newest.frame.kind.label if newest else "none",
                    received=st.received, dropped=st.dropped, stale=st.stale, restarts=st.restarts,
                    lost_events=st.lost_events,
                    last_seq=st.last_seq,
                    lost=st.lost,
                    rate_hz=rate, latest_age_s=age,
                    face_lost=bool(newest and newest.frame.face_lost),
                    end_of_stream=bool(newest and newest.frame.end_of_stream),
                )
        return out

    def wait_for(self, predicate, timeout_s: float, poll_s: float = 0.01) -> bool:
        """Test/tool helper: polls ``predicate(self)`` until true or the timeout passes."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self):
                return True
            time.sleep(poll_s)
        return bool(predicate(self))


def status_as_dict(status: StreamStatus) -> dict:
    d = dict(status.__dict__)
    if d["latest_age_s"] == float("inf"):
        d["latest_age_s"] = None
    return d


__all__ = ["FrameArrivals", "FrameSource", "Receiver", "ReceiverConfig", "ReceivedFrame", "StreamStatus", "ReceiverCounters", "status_as_dict"]
