"""NTP-style clock exchange over ZeroMQ between capture nodes and the render node.

The render node runs a :class:`ClockServer` (ROUTER, bound next to its feature endpoint). A capture
node's :class:`ClockClient` (DEALER) pings it, estimates render-minus-capture offset and drift, and
reports its current estimate inside each ping, so the render node learns the mapping for every
stream without a second round trip. Messages are fixed little-endian structs, validated strictly.

What a hostile or broken peer could do to it, and what it does instead (issue 11):

* **CURVE works**: the socket's message-size limit (`MAX_WIRE_BYTES`) bounds what a peer can make
  it buffer, but sits above the CURVE handshake's largest command (INITIATE, ~300 bytes with its
  metadata); a limit of 256 bytes made the service drop every CURVE client unanswered.
* **A report's numbers are bounded** before they become a `ClockMapping`: |offset| < 2^61 ns,
  0 ≤ uncertainty ≤ 10^12 ns, |drift| < 10^-3, all finite. An uncertainty of 1e308 used to kill the
  service thread (int overflow) and an offset of 1e19 crashed the render node at exit; both are now
  counted (`bad_reports`) and dropped, and nothing in the thread can end it.
* **Reports are capped** (`max_reports`): a new stream id takes the slot of the oldest report once
  that one is older than `report_ttl_s`; otherwise it is refused and counted (`reports_refused`).
  Ids a scene declares (`reserved`) are never refused. Reports for 334 k made-up ids used to grow
  memory by 156 MB.
* **A client never hangs**: pings go out without blocking, and a handshake the peer refused
  (plaintext against a CURVE service, a key not on its allow-list) is a `ClockServiceError` naming
  the reason instead of a `send()` that waits for ever.
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

# Largest message (one part) either side accepts from the wire. A ping is 97 bytes; CURVE adds its
# box overhead, and the handshake's INITIATE command carries vouch + metadata (~300 bytes).
MAX_WIRE_BYTES = 2048
MAX_OFFSET_NS = float(2 ** 61)       # ~73 years: monotonic clocks of two hosts never differ more
MAX_UNCERTAINTY_NS = 1e12            # 1000 s: any larger "estimate" is no estimate
MAX_DRIFT = 1e-3                     # 1000 ppm; crystals are within ~100 ppm


class ClockServiceError(HeadcastError, RuntimeError):
    """The clock service cannot be reached or refused this client (the message says why)."""


def report_mapping(offset: float, drift: float, ref: int, unc: float) -> ClockMapping | None:
    """The mapping a ping's report describes, or None when any number is out of its bounds."""
    if not all(map(_finite, (offset, drift, unc))):
        return None
    if abs(offset) >= MAX_OFFSET_NS or not 0.0 <= unc <= MAX_UNCERTAINTY_NS or abs(drift) >= MAX_DRIFT:
        return None
    return ClockMapping(float(offset), float(drift), int(ref), 0, int(2 * unc), float(unc))


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
                 clock: Clock = time.monotonic_ns, max_reports: int = 256, report_ttl_s: float = 5.0,
                 reserved: frozenset[str] = frozenset()):
        self.clock = clock
        self._socket = open_socket(zmq.ROUTER, endpoint, bind=True, curve_server=curve_server, insecure=insecure,
                                   options=SocketOptions(maxmsgsize=MAX_WIRE_BYTES, sndhwm=256, rcvhwm=256))
        self._sock = self._socket.sock
        self.endpoint = self._socket.endpoint
        self._reports: dict[str, PeerReport] = {}
        self._lock = threading.Lock()
        self.max_reports = max_reports
        self.report_ttl_ns = int(report_ttl_s * 1e9)
        self.reserved = frozenset(reserved)
        self.malformed = 0
        self.answered = 0
        self.bad_reports = 0      # reports with out-of-range numbers (dropped; the ping is still answered)
        self.reports_refused = 0  # reports for new ids while every slot held a fresh report
        self.errors = 0           # anything unexpected while handling a message (counted, never fatal)
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
                    try:
                        self._handle(parts, t2)
                    except Exception:  # one message must never end the service
                        self.errors += 1
                        if self.errors == 1:
                            log.exception("clock service: error handling a message (further ones only counted)")
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
            mapping = report_mapping(offset, drift, ref, unc)
            if mapping is None:
                self.bad_reports += 1
                return
            self._store(PeerReport(sid, mapping, t2))

    def _store(self, report: PeerReport) -> None:
        with self._lock:
            sid = report.stream_id
            if sid not in self._reports and len(self._reports) >= self.max_reports:
                unreserved = [r for r in self._reports.values() if r.stream_id not in self.reserved]
                oldest = min(unreserved, key=lambda r: r.t_received_ns, default=None)
                stale = oldest is not None and report.t_received_ns - oldest.t_received_ns > self.report_ttl_ns
                if oldest is None or not (stale or sid in self.reserved):
                    self.reports_refused += 1
                    return
                del self._reports[oldest.stream_id]
            self._reports[sid] = report

    def mapping_for(self, stream_id: str) -> ClockMapping | None:
        """capture-host time → render-host time for that stream, if its node reported one."""
        with self._lock:
            r = self._reports.get(stream_id)
            return r.mapping if r else None

    def reports(self) -> dict[str, PeerReport]:
        with self._lock:
            return dict(self._reports)

    def stats(self) -> dict:
        """Counters for the render node's and `listen`'s JSON."""
        with self._lock:
            n = len(self._reports)
        return {"endpoint": self.endpoint, "answered": self.answered, "malformed": self.malformed,
                "bad_reports": self.bad_reports, "reports": n, "reports_refused": self.reports_refused,
                "errors": self.errors}

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
        self.endpoint = endpoint
        self._socket = open_socket(zmq.DEALER, endpoint, bind=False, curve_client=curve_client,
                                   options=SocketOptions(maxmsgsize=MAX_WIRE_BYTES, sndhwm=16))
        self._sock = self._socket.sock
        self._handshake = self._socket.handshake_monitor()
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
            try:
                # Never blocks: with no peer that completed a handshake a DEALER queues pings up to
                # its HWM and then send() waits for ever (plaintext against a CURVE port did).
                self._sock.send(_PING.pack(MAGIC, seq, t1, self.stream_id.encode(), *report), zmq.NOBLOCK)
            except zmq.Again:
                pass
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

    @property
    def refused(self) -> str | None:
        """Why the peer refused this client's handshake (None while nothing was refused)."""
        with self._lock:
            if not self._handshake.refused:
                return None
            self._handshake.settle()
            return self._handshake.failure

    def measure(self, count: int = 64, interval_s: float = 0.01, timeout_s: float = 0.5,
                give_up_after: int = 6) -> ClockMapping | None:
        """`count` exchanges. Raises `ClockServiceError` when the peer refused the handshake, and
        stops after `give_up_after` unanswered pings in a row before any answer (None)."""
        answered = misses = 0
        for _ in range(count):
            if self.ping(timeout_s) is None:
                misses += 1
                why = self.refused
                if why is not None:
                    raise ClockServiceError(f"clock service {self.endpoint}: {why}")
                if not answered and misses >= give_up_after:
                    return None
            else:
                answered += 1
                misses = 0
            if interval_s:
                time.sleep(interval_s)
        return self.estimator.estimate()

    def start_background(self, period_s: float = 0.5) -> None:
        """Keeps pinging (and reporting) for the whole session so drift is tracked."""
        def loop():
            warned = False
            while not self._stop.wait(period_s):
                if self.ping() is None and not warned and self.refused:
                    warned = True
                    log.warning("clock service %s: %s; latency figures will not be clock-calibrated",
                                self.endpoint, self.refused)
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


def start_clock_service(spec: str, feature_endpoint: str, curve: CurveServer | None, insecure: bool,
                        reserved: frozenset[str] = frozenset()) -> ClockServer | None:
    """The clock service capture nodes ping: `spec` "auto" (the feature port + 1), "off", or an endpoint.

    With "auto", a service that cannot start (port taken) is logged and skipped: streams still
    work, only cross-host latency figures lose their calibration. An endpoint the user named
    explicitly must work: its failure raises the `HeadcastError` that says why."""
    if spec == "off":
        return None
    if spec != "auto":
        return ClockServer(spec, curve_server=curve, insecure=insecure, reserved=reserved)
    try:
        return ClockServer(clock_endpoint_for(feature_endpoint), curve_server=curve, insecure=insecure,
                           reserved=reserved)
    except (HeadcastError, ValueError) as exc:
        log.warning("no clock service: %s", exc)
        return None

