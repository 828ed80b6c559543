"""NTP-style clock exchange over ZeroMQ between capture nodes and the render node.

The render node runs a :class:`ClockServer` (ROUTER, bound next to its feature endpoint). A capture
node's :class:`ClockClient` (DEALER) pings it, estimates render-minus-capture offset and drift, and
reports its current estimate inside each ping, so the render node learns the mapping for every
stream without a second round trip. Messages are fixed little-endian structs, validated strictly.
"""
from __future__ import annotations

import logging
import re
import struct
import threading
import time
from dataclasses import dataclass
from typing import Callable

import zmq

from core.errors import HeadcastError
from streaming.protocol import validate_stream_id
from streaming.sockets import CurveClient, CurveServer, SocketOptions, open_socket

from .clock import ClockEstimator, ClockMapping, EstimatorConfig, Exchange

log = logging.getLogger(__name__)

MAGIC = b"HCK1"
# ping: magic, seq, t1, stream id, has_report, offset_ns, drift, ref_local_ns, uncertainty_ns
_PING = struct.Struct("<4sIq32sBddqd")
# pong: magic, seq, t1 (echoed), t2, t3
_PONG = struct.Struct("<4sIqqq")

Clock = Callable[[], int]


def clock_endpoint_for(feature_endpoint: str) -> str:
    """Convention: the clock service listens on the feature endpoint's port + 1."""
    m = re.match(r"^(tcp://.+):(\d+)$", feature_endpoint)
    if not m:
        raise ValueError(f"cannot derive a clock endpoint from {feature_endpoint!r}; give it explicitly")
    return f"{m.group(1)}:{int(m.group(2)) + 1}"


@dataclass(frozen=True)
class PeerReport:
    stream_id: str
    mapping: ClockMapping  # peer (capture) local → this host (render)
    t_received_ns: int


class ClockServer:
    def __init__(self, endpoint: str, *, curve_server: CurveServer | None = None, insecure: bool = False,
                 clock: Clock = time.monotonic_ns):
        self.clock = clock
        self._socket = open_socket(zmq.ROUTER, endpoint, bind=True, curve_server=curve_server, insecure=insecure,
                                   options=SocketOptions(maxmsgsize=256))
        self._sock = self._socket.sock
        self.endpoint = self._socket.endpoint
        self._reports: dict[str, PeerReport] = {}
        self._lock = threading.Lock()
        self.malformed = 0
        self.answered = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headcast-clock-server", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        try:
            while not self._stop.is_set():
                if not poller.poll(50):
                    continue
                while True:
                    try:
                        parts = self._sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    t2 = self.clock()
                    self._handle(parts, t2)
        except zmq.ContextTerminated:
            pass

    def _handle(self, parts: list[bytes], t2: int) -> None:
        if len(parts) != 2 or len(parts[1]) != _PING.size:
            self.malformed += 1
            return
        magic, seq, t1, sid_raw, has_report, offset, drift, ref, unc = _PING.unpack(parts[1])
        if magic != MAGIC:
            self.malformed += 1
            return
        self.answered += 1  # before the reply leaves, so a client that has its answer sees the count
        t3 = self.clock()
        try:
            self._sock.send_multipart([parts[0], _PONG.pack(MAGIC, seq, t1, t2, t3)], zmq.NOBLOCK)
        except zmq.Again:
            self.answered -= 1
            return
        if has_report:
            try:
                sid = validate_stream_id(sid_raw.rstrip(b"\0").decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self.malformed += 1
                return
            if all(map(_finite, (offset, drift, unc))) and abs(drift) < 1e-3:
                mapping = ClockMapping(offset, drift, ref, 0, int(2 * unc), unc)
                with self._lock:
                    self._reports[sid] = PeerReport(sid, mapping, t2)

    def mapping_for(self, stream_id: str) -> ClockMapping | None:
        """capture-host time → render-host time for that stream, if its node reported one."""
        with self._lock:
            r = self._reports.get(stream_id)
            return r.mapping if r else None

    def reports(self) -> dict[str, PeerReport]:
        with self._lock:
            return dict(self._reports)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._socket.close()

    def __enter__(self) -> "ClockServer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _finite(x: float) -> bool:
    return x == x and abs(x) != float("inf")


class ClockClient:
    def __init__(self, endpoint: str, stream_id: str = "", *, curve_client: CurveClient | None = None,
                 clock: Clock = time.monotonic_ns, estimator: EstimatorConfig = EstimatorConfig()):
        if stream_id:
            validate_stream_id(stream_id)
        self.stream_id = stream_id
        self.clock = clock
        self.estimator = ClockEstimator(estimator)
        self._socket = open_socket(zmq.DEALER, endpoint, bind=False, curve_client=curve_client,
                                   options=SocketOptions(maxmsgsize=256))
        self._sock = self._socket.sock
        self._seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.timeouts = 0

    def ping(self, timeout_s: float = 0.5) -> Exchange | None:
        """One exchange; returns None on timeout. Stale replies of earlier pings are skipped."""
        with self._lock:
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            seq = self._seq
            m = self.estimator.estimate()
            report = (1, m.offset_ns, m.drift, m.ref_local_ns, m.uncertainty_ns) if m else (0, 0.0, 0.0, 0, 0.0)
            t1 = self.clock()
            self._sock.send(_PING.pack(MAGIC, seq, t1, self.stream_id.encode(), *report))
            deadline = time.monotonic() + timeout_s
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._sock.poll(int(remaining * 1000) + 1):
                    self.timeouts += 1
                    return None
                msg = self._sock.recv()
                t4 = self.clock()
                if len(msg) != _PONG.size:
                    continue
                magic, rseq, rt1, t2, t3 = _PONG.unpack(msg)
                if magic != MAGIC or rseq != seq or rt1 != t1:
                    continue
                ex = Exchange(t1, t2, t3, t4)
                self.estimator.add(ex)
                return ex

    def measure(self, count: int = 64, interval_s: float = 0.01, timeout_s: float = 0.5) -> ClockMapping | None:
        for _ in range(count):
            self.ping(timeout_s)
            if interval_s:
                time.sleep(interval_s)
        return self.estimator.estimate()

    def start_background(self, period_s: float = 0.5) -> None:
        """Keeps pinging (and reporting) for the whole session so drift is tracked."""
        def loop():
            while not self._stop.wait(period_s):
                self.ping()
        self._thread = threading.Thread(target=loop, name="headcast-clock-client", daemon=True)
        self._thread.start()

    def mapping(self) -> ClockMapping | None:
        with self._lock:
            return self.estimator.estimate()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)
        self._socket.close()

    def __enter__(self) -> "ClockClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_clock_service(spec: str, feature_endpoint: str, curve: CurveServer | None, insecure: bool) -> ClockServer | None:
    """The clock service capture nodes ping: `spec` "auto" (the feature port + 1), "off", or an endpoint.

    With "auto", a service that cannot start (port taken) is logged and skipped: streams still
    work, only cross-host latency figures lose their calibration. An endpoint the user named
    explicitly must work: its failure raises the `HeadcastError` that says why."""
    if spec == "off":
        return None
    if spec != "auto":
        return ClockServer(spec, curve_server=curve, insecure=insecure)
    try:
        return ClockServer(clock_endpoint_for(feature_endpoint), curve_server=curve, insecure=insecure)
    except (HeadcastError, ValueError) as exc:
        log.warning("no clock service: %s", exc)
        return None

