"""The render node's feature receiver: a SUB socket drained by its own thread.

Per stream it keeps the newest frame plus a short history (the animation network's window). It
never queues stale frames (small HWM; the thread drains the socket continuously), counts what it
drops and what is malformed, marks a silent stream lost and resumes it when frames come back.
Callers read snapshots under a short lock: nothing here blocks the render loop.

Network input is hostile (issue 11), so no single message decides a stream's state:

* **Streams are bound to keys.** Under CURVE the ZAP handler attaches the publishing client's key
  to every message (its ``User-Id``); a stream id belongs to the key that first published it, and
  frames on it from any other key are counted (``foreign_key``) and ignored. (Plaintext has no
  keys: anyone on loopback can publish anything, which is why plaintext is loopback-only.)
* **Sequence and time may only move plausibly**, measured against the receiver's own clock: a
  frame follows its stream when its sequence number advances by at least 1 and at most
  ``seq_slack`` + ``max_rate_hz`` × the receive time elapsed since the stream's last frame, and its
  capture time by at most that elapsed time + ``time_slack_s`` (going back by no more than
  ``time_slack_s``). One forged frame with the largest sequence number and a timestamp near 2^62
  used to make every later legitimate frame "stale" (and wrap the drop counter); now it follows
  nothing and is ignored.
* **A frame that does not follow is held, not applied.** It starts or extends a *candidate* run;
  a run of at least ``resync_frames`` frames that follow each other (a publisher that really
  restarted, or changed feature kind) re-anchors the stream — counted in ``restarts`` — and is
  delivered, but only once the stream's own frames have stopped for ``resync_silence_s``: while
  the stream is live, any frame that follows it ends the candidate, so no run of forged frames
  (the soak test's forger sent 200/s) can take a live stream over. A candidate's frames that are
  not adopted are counted as ``stale`` (older than the stream) or ``jumps`` (any other implausible
  move). A lost stream (silent past ``lost_after_s``) takes its next frame as a fresh start at once.
* **A stream keeps its feature kind**: a frame of another kind is a misfit like any other (a change
  of kind needs a run), so single frames of another kind can no longer make the avatar flicker.
* **Slots are released.** A stream silent for ``release_after_s`` frees its slot and its key
  binding; when all ``max_streams`` slots are taken, a new stream takes the slot of the longest-lost
  one. Scene-declared ids (``reserved_streams``) have slots outside that budget, so a flood of
  made-up ids cannot lock out the avatars a scene shows. Every rejection is counted
  (`ReceiverCounters`, whose ``accounted`` equals ``messages``) and reported in the render node's
  and `headcast listen`'s JSON.
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
from streaming.sockets import (
    DEFAULT_ENDPOINT,
    CurveClient,
    CurveServer,
    ManagedSocket,
    SocketOptions,
    open_socket,
    zap_user_id,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamLimits:
    """How far one frame may move its stream, relative to the receive time elapsed since the last one."""

    seq_slack: int = 4096         # sequence numbers a frame may skip beyond max_rate_hz × elapsed (bursts)
    max_rate_hz: float = 1000.0   # no camera sends faster (bounds the sequence advance per second)
    time_slack_s: float = 1.0     # capture-time advance beyond the elapsed receive time (queueing, jitter)
    resync_frames: int = 3        # consecutive misfits that follow each other and re-anchor a stream ...
    resync_silence_s: float = 0.25  # ... once the stream itself has been silent this long


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
    max_streams: int = 64  # slots for streams not reserved: a flood of distinct ids must not grow memory
    allowed_streams: frozenset[str] | None = None  # None: any valid id
    reserved_streams: frozenset[str] = frozenset()  # scene-declared ids: a slot of their own, never evicted
    release_after_s: float = 10.0  # silence after which a stream's slot and key binding are released
    limits: StreamLimits = StreamLimits()
    poll_ms: int = 20
    # Stream ids to subscribe to (None: everything). Through a room's relay this is what keeps the
    # streams a render node does not show off its network link (XPUB forwards the subscriptions).
    subscribe: tuple[str, ...] | None = None


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
    restarts: int  # re-anchored: the publisher restarted (or a run of frames replaced the sequence)
    lost_events: int  # times the stream went silent past lost_after_s
    last_seq: int
    lost: bool
    rate_hz: float
    latest_age_s: float
    face_lost: bool
    end_of_stream: bool
    jumps: int = 0  # frames whose sequence or capture time moved implausibly (ignored)
    foreign_key: int = 0  # frames from a key other than the stream's owner (ignored)
    owner: str | None = None  # the CURVE client key (z85) the stream is bound to; None on plaintext
    reserved: bool = False  # a scene-declared stream


@dataclass
class _StreamState:
    stream_id: str
    history: collections.deque
    reserved: bool = False
    arrivals: collections.deque = field(default_factory=lambda: collections.deque(maxlen=256))
    received: int = 0
    dropped: int = 0
    stale: int = 0
    restarts: int = 0
    lost_events: int = 0
    jumps: int = 0
    foreign_key: int = 0
    last_seq: int = -1
    lost: bool = False
    generation: int = 0  # frames accepted on this stream (wakes consumers that watch it)
    owner: str | None = None  # ZAP User-Id of the key bound to this stream
    anchor: ReceivedFrame | None = None  # the newest accepted frame: what the next one must follow
    # Frames that did not follow the anchor but follow each other, with what each counts as if dropped.
    candidate: list = field(default_factory=list)


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

    def generation_for(self, streams: frozenset[str] | None) -> int: ...

    def wait_for_frame(self, after: int, timeout_s: float, streams: frozenset[str] | None = None) -> int: ...


@dataclass(frozen=True)
class ReceiverCounters:
    messages: int  # all messages taken off the socket
    malformed: int  # failed protocol validation
    unknown_stream: int  # valid frames for ids not in allowed_streams
    malformed_by_kind: dict[str, int]
    accepted: int = 0  # frames delivered to their stream
    stale: int = 0  # older than their stream (duplicates, reordering, replayed bytes)
    jumps: int = 0  # implausible sequence / capture-time moves (forged, or a run too short to re-anchor)
    foreign_key: int = 0  # frames on a stream bound to another CURVE key
    over_capacity: int = 0  # frames of new streams refused: every slot held by a live stream
    pending: int = 0  # misfits held in candidate runs right now (neither delivered nor rejected yet)
    released: int = 0  # slots (or key bindings of reserved streams) freed after silence
    evicted: int = 0  # slots of lost streams taken by a new stream at capacity
    restarts: int = 0  # streams re-anchored

    @property
    def accounted(self) -> int:
        """Every message is malformed, refused, rejected, pending or accepted: this equals ``messages``."""
        return (self.malformed + self.unknown_stream + self.over_capacity + self.accepted + self.stale
                + self.jumps + self.foreign_key + self.pending)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["malformed_by_kind"] = dict(self.malformed_by_kind)
        d["accounted"] = self.accounted
        return d


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
        # Totals over every stream ever held (a released stream takes its own counters with it).
        self._totals: collections.Counter = collections.Counter()
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
            options=SocketOptions(rcvhwm=cfg.rcvhwm, maxmsgsize=protocol.MAX_MESSAGE_BYTES,
                                  subscribe=b"" if cfg.subscribe is None else None))
        for stream_id in cfg.subscribe or ():
            self._socket.sock.setsockopt(zmq.SUBSCRIBE, stream_id.encode("utf-8"))
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
                            # zmq.Frames rather than bytes: the first carries its key's ZAP User-Id.
                            frames = sock.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._ingest([f.bytes for f in frames], time.monotonic_ns(), zap_user_id(frames[0]))
                self._update_lost(time.monotonic_ns())
        except zmq.ContextTerminated:
            pass
        except BaseException as exc:  # pragma: no cover - surfaced through .error
            log.exception("receiver thread died")
            self._error = exc

    def _ingest(self, parts: list[bytes], t_receive_ns: int, user_id: str | None = None) -> None:
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
            sid = frame.stream_id
            if cfg.allowed_streams is not None and sid not in cfg.allowed_streams:
                self._unknown += 1
                return
            st = self._streams.get(sid)
            if st is None:
                st = self._new_stream(sid)
                if st is None:
                    self._totals["over_capacity"] += 1
                    return
            if st.owner is not None and user_id != st.owner:
                st.foreign_key += 1
                self._totals["foreign_key"] += 1
                return
            rec = ReceivedFrame(frame, t_receive_ns)
            if st.anchor is None or self._follows(st.anchor, rec):
                self._discard_candidate(st)
                self._accept(st, rec, user_id)
            elif st.lost:
                self._discard_candidate(st)
                self._restart(st, "came back with another sequence (its publisher restarted)")
                self._accept(st, rec, user_id)
            else:
                self._hold(st, rec, user_id)

    def _new_stream(self, sid: str) -> _StreamState | None:
        """A slot for a new stream id, or None when every slot is held by a live stream."""
        cfg = self.config
        reserved = sid in cfg.reserved_streams
        if not reserved:
            unreserved = [st for st in self._streams.values() if not st.reserved]
            if len(unreserved) >= cfg.max_streams:
                lost = [st for st in unreserved if st.lost]
                if not lost:
                    return None
                victim = min(lost, key=lambda st: st.arrivals[-1] if st.arrivals else 0)
                del self._streams[victim.stream_id]
                self._totals["evicted"] += 1
                log.info("stream %s evicted (lost) to make room for %s", victim.stream_id, sid)
        st = _StreamState(sid, collections.deque(maxlen=cfg.history), reserved=reserved)
        self._streams[sid] = st
        return st

    def _follows(self, prev: ReceivedFrame, rec: ReceivedFrame) -> bool:
        """Whether `rec` plausibly comes next after `prev` on one stream: the same feature kind (or a
        control frame), sequence and capture time advancing no faster than the receive clock allows."""
        lim = self.config.limits
        f, p = rec.frame, prev.frame
        if f.kind != p.kind and protocol.FeatureKind.NONE not in (f.kind, p.kind):
            return False
        elapsed_s = max(0, rec.t_receive_ns - prev.t_receive_ns) / 1e9
        if not 1 <= f.seq - p.seq <= lim.seq_slack + lim.max_rate_hz * elapsed_s:
            return False
        dcap_s = (f.t_capture_ns - p.t_capture_ns) / 1e9
        return -lim.time_slack_s <= dcap_s <= elapsed_s + lim.time_slack_s

    def _accept(self, st: _StreamState, rec: ReceivedFrame, user_id: str | None) -> None:
        if st.anchor is not None:
            st.dropped += rec.frame.seq - st.anchor.frame.seq - 1  # bounded: the frame follows the anchor
        if st.owner is None and user_id is not None:
            st.owner = user_id
        if st.lost:
            st.lost = False
            log.info("stream %s resumed", st.stream_id)
        st.anchor = rec
        st.last_seq = rec.frame.seq
        st.received += 1
        self._totals["accepted"] += 1
        st.history.append(rec)
        st.arrivals.append(rec.t_receive_ns)
        st.generation += 1
        self._generation += 1
        self._arrived.notify_all()

    def _restart(self, st: _StreamState, why: str) -> None:
        st.restarts += 1
        self._totals["restarts"] += 1
        st.history.clear()
        st.anchor = None
        log.info("stream %s %s", st.stream_id, why)

    def _hold(self, st: _StreamState, rec: ReceivedFrame, user_id: str | None) -> None:
        """A frame that does not follow its stream starts or extends a candidate run; a run of
        ``resync_frames`` re-anchors the stream, anything shorter is counted and ignored."""
        anchor = st.anchor.frame
        older = rec.frame.seq <= anchor.seq and rec.frame.t_capture_ns <= anchor.t_capture_ns
        if st.candidate and not self._follows(st.candidate[-1][0], rec):
            self._discard_candidate(st)
        st.candidate.append((rec, "stale" if older else "jumps"))
        lim = self.config.limits
        if len(st.candidate) > self.config.history:  # bounded: the oldest misfit is given up
            _, verdict = st.candidate.pop(0)
            self._count_rejected(st, verdict)
        silent_ns = rec.t_receive_ns - st.anchor.t_receive_ns
        if len(st.candidate) < lim.resync_frames or silent_ns < lim.resync_silence_s * 1e9:
            return
        run, st.candidate = st.candidate, []
        self._restart(st, f"re-anchored at seq {run[0][0].frame.seq} by {len(run)} consecutive frames")
        for r, _ in run:
            self._accept(st, r, user_id)

    def _discard_candidate(self, st: _StreamState) -> None:
        for _, verdict in st.candidate:
            self._count_rejected(st, verdict)
        st.candidate = []

    def _count_rejected(self, st: _StreamState, verdict: str) -> None:
        if verdict == "stale":
            st.stale += 1
        else:
            st.jumps += 1
        self._totals[verdict] += 1

    def _update_lost(self, now_ns: int) -> None:
        cfg = self.config
        lost_ns, release_ns = int(cfg.lost_after_s * 1e9), int(cfg.release_after_s * 1e9)
        with self._lock:
            for sid, st in list(self._streams.items()):
                if not st.arrivals:
                    continue
                silent = now_ns - st.arrivals[-1]
                if not st.lost and silent > lost_ns:
                    st.lost = True
                    st.lost_events += 1
                    self._discard_candidate(st)
                    log.info("stream %s lost (silent for %.1f s)", sid, cfg.lost_after_s)
                if st.lost and silent > release_ns and (st.owner is not None or not st.reserved):
                    self._totals["released"] += 1
                    if st.reserved:
                        st.owner = None  # a scene's stream keeps its slot; any allowed key may take it up
                    else:
                        del self._streams[sid]
                    log.info("stream %s released after %.0f s of silence", sid, cfg.release_after_s)

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

    def generation_for(self, streams: frozenset[str] | None) -> int:
        """Frames accepted so far on `streams` (all streams: None), for `wait_for_frame`."""
        with self._lock:
            return self._generation_for(streams)

    def _generation_for(self, streams: frozenset[str] | None) -> int:
        if streams is None:
            return self._generation
        return sum(st.generation for sid, st in self._streams.items() if sid in streams)

    def wait_for_frame(self, after: int, timeout_s: float, streams: frozenset[str] | None = None) -> int:
        """Block until a frame is accepted after generation `after` (of `streams`, when given: a
        consumer of some streams is not woken by a flood on others), or `timeout_s` passes;
        returns the generation then (equal to `after` on a timeout)."""
        with self._arrived:
            self._arrived.wait_for(lambda: self._generation_for(streams) != after, timeout=max(0.0, timeout_s))
            return self._generation_for(streams)

    @property
    def counters(self) -> ReceiverCounters:
        with self._lock:
            t = self._totals
            pending = sum(len(st.candidate) for st in self._streams.values())
            return ReceiverCounters(self._messages, self._malformed, self._unknown, dict(self._malformed_by_kind),
                                    accepted=t["accepted"], stale=t["stale"], jumps=t["jumps"],
                                    foreign_key=t["foreign_key"], over_capacity=t["over_capacity"],
                                    pending=pending, released=t["released"], evicted=t["evicted"],
                                    restarts=t["restarts"])

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
                    jumps=st.jumps, foreign_key=st.foreign_key, owner=st.owner, reserved=st.reserved,
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


__all__ = ["FrameArrivals", "FrameSource", "Receiver", "ReceiverConfig", "ReceivedFrame", "StreamLimits", "StreamStatus",
           "ReceiverCounters", "status_as_dict"]
