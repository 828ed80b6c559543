"""A room's stream fan-out: ZeroMQ's own XSUB/XPUB forwarding plus one ownership check per message.

    relay = StreamRelay(RelayConfig("tcp://127.0.0.1:7000", "tcp://127.0.0.1:7001", curve=keys),
                        key_names={z85_key: "alice", ...}).start()
    relay.set_owner("alice", "alice")        # stream id → participant (the room's slots say so)
    ...; relay.counters(); relay.stop()

Capture nodes connect their PUB to the XSUB side, render nodes their SUB to the XPUB side; the
subscriptions render nodes make travel upstream through the XSUB socket (ZeroMQ's subscription
forwarding), so a render node receives only the streams it subscribed to and a stream nobody wants
is filtered at its publisher's socket already. The relay is ZeroMQ's proxy loop written out, so that
one step of ours can sit in the middle: the message's ZAP ``User-Id`` (the CURVE key that ZAP
accepted, on the frame received with ``copy=False``) must name the participant that owns the stream
id it publishes under, and the header's framing must be right with the topic equal to the header's
stream id (`protocol.check_framing`), so an owned topic cannot carry another stream's header. The
payload is left to the render nodes' strict decoder: the full decode (isfinite over 1434 floats)
measured 25 µs a frame in a loop here and about 240 µs of relay CPU per forwarded frame on the
loaded machine, which was most of the relay's cost (`headcast bench room`). A refused message is counted
(``spoofed``, ``unknown_stream``, ``unknown_sender``, ``malformed``) and reaches nobody. Frames
are forwarded as the same zero-copy ``zmq.Frame`` objects they arrived as.

Plaintext (no CURVE: loopback only, by the bind policy) carries no identity: any local process may
publish a registered stream id, which is why a room reachable from other hosts needs CURVE.
Each socket lives in its own context with its own ZAP authenticator (`streaming.sockets` starts one
per CURVE server socket; a context holds one ZAP handler).
"""
from __future__ import annotations

import collections
import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import zmq

from streaming import protocol
from streaming.sockets import CurveServer, ManagedSocket, SocketOptions, load_public_key, open_socket, zap_user_id

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelayConfig:
    streams_in: str                 # XSUB: capture nodes connect their PUB here
    streams_out: str                # XPUB: render nodes connect their SUB here
    curve: CurveServer | None = None
    insecure: bool = False
    hwm: int = 64                   # per peer: a frame that cannot leave at once is stale by the next
    poll_ms: int = 50


@dataclass(frozen=True)
class RelayCounters:
    messages: int = 0               # taken off the XSUB socket
    forwarded: int = 0
    spoofed: int = 0                # an authenticated sender publishing a stream id it does not own
    unknown_stream: int = 0         # a stream id no slot of the room holds
    unknown_sender: int = 0         # CURVE on, but the key has no participant name (cannot happen via ZAP)
    malformed: int = 0              # failed the strict decoder (or not two parts)
    subscriptions: int = 0          # subscribe / unsubscribe messages forwarded upstream
    send_dropped: int = 0           # the XPUB side refused a send (shutdown)
    spoofed_by_sender: dict | None = None

    @property
    def accounted(self) -> int:
        return self.forwarded + self.spoofed + self.unknown_stream + self.unknown_sender + self.malformed + \
            self.send_dropped

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["spoofed_by_sender"] = dict(self.spoofed_by_sender or {})
        d["accounted"] = self.accounted
        return d


def key_names_from_dir(directory: Path) -> dict[str, str]:
    """z85 public key → participant name for every ``NAME.key`` in an allow-list directory (the
    layout `headcast keys generate` writes): the ZAP User-Id of a CURVE client is its z85 key."""
    names: dict[str, str] = {}
    for path in sorted(Path(directory).glob("*.key")):
        names[load_public_key(path).decode("ascii")] = path.stem
    return names


class StreamRelay:
    def __init__(self, config: RelayConfig, key_names: dict[str, str] | None = None):
        self.config = config
        self.key_names = dict(key_names or {})
        # stream id (bytes) → participant name. Replaced whole by set_owners (one reference swap, read
        # without a lock by the forwarding thread).
        self._owners: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._count = collections.Counter()
        self._spoofers = collections.Counter()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._in: ManagedSocket | None = None
        self._out: ManagedSocket | None = None
        self.endpoints: tuple[str, str] | None = None

    # -- ownership (from the room's slots) -------------------------------------------------
    def set_owners(self, owners: dict[str, str]) -> None:
        self._owners = {sid.encode("utf-8"): name for sid, name in owners.items()}

    def owners(self) -> dict[str, str]:
        return {sid.decode("utf-8"): name for sid, name in self._owners.items()}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> StreamRelay:
        cfg = self.config
        opts = SocketOptions(linger_ms=0, sndhwm=cfg.hwm, rcvhwm=cfg.hwm, maxmsgsize=protocol.MAX_MESSAGE_BYTES)
        self._in = open_socket(zmq.XSUB, cfg.streams_in, bind=True, curve_server=cfg.curve, insecure=cfg.insecure,
                               options=opts)
        try:
            self._out = open_socket(zmq.XPUB, cfg.streams_out, bind=True, curve_server=cfg.curve,
                                    insecure=cfg.insecure, options=SocketOptions(linger_ms=0, sndhwm=cfg.hwm,
                                                                                 rcvhwm=cfg.hwm, maxmsgsize=1024))
        except BaseException:
            self._in.close()
            raise
        self.endpoints = (self._in.endpoint, self._out.endpoint)
        self._thread = threading.Thread(target=self._run, name="headcast-room-relay", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for s in (self._in, self._out):
            if s is not None:
                s.close()
        self._in = self._out = None

    def __enter__(self) -> StreamRelay:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- the forwarding loop ---------------------------------------------------------------
    def _run(self) -> None:
        xsub, xpub = self._in.sock, self._out.sock
        poller = zmq.Poller()
        poller.register(xsub, zmq.POLLIN)
        poller.register(xpub, zmq.POLLIN)
        curve = self.config.curve is not None
        count = self._count
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(self.config.poll_ms))
            except zmq.ZMQError:
                return
            if xpub in ready:
                # Subscriptions from render nodes go upstream unchanged (ZeroMQ's forwarding).
                while True:
                    try:
                        msg = xpub.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    xsub.send(msg)
                    count["subscriptions"] += 1
            if xsub in ready:
                while True:
                    try:
                        frames = xsub.recv_multipart(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    count["messages"] += 1
                    verdict = self._check(frames, curve)
                    if verdict is not None:
                        count[verdict] += 1
                        continue
                    try:
                        xpub.send_multipart(frames, zmq.NOBLOCK, copy=False)
                        count["forwarded"] += 1
                    except zmq.Again:
                        count["send_dropped"] += 1

    def _check(self, frames, curve: bool) -> str | None:
        """None when the message may go out, else the counter it lands in."""
        if len(frames) != 2:
            return "malformed"
        topic = frames[0].bytes
        owner = self._owners.get(topic)
        if owner is None:
            return "unknown_stream"
        if curve:
            uid = zap_user_id(frames[0])
            name = self.key_names.get(uid) if uid else None
            if name is None:
                return "unknown_sender"
            if name != owner:
                with self._lock:
                    self._spoofers[name] += 1
                return "spoofed"
        try:
            protocol.check_framing(topic, frames[1].buffer)
        except protocol.ProtocolError:
            return "malformed"
        return None

    def counters(self) -> RelayCounters:
        c = dict(self._count)
        with self._lock:
            spoofers = dict(self._spoofers)
        return RelayCounters(**{k: c.get(k, 0) for k in ("messages", "forwarded", "spoofed", "unknown_stream",
                                                          "unknown_sender", "malformed", "subscriptions",
                                                          "send_dropped")}, spoofed_by_sender=spoofers)


__all__ = ["RelayConfig", "RelayCounters", "StreamRelay", "key_names_from_dir"]
