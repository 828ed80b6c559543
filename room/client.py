"""A participant's link to a room: a local copy of the scene kept in sync, heartbeats, edits, packages.

    client = RoomClient(RoomClientConfig(RoomEndpoints.from_base(url), name="alice", curve=keys)).start()
    client.wait_synced(5.0)
    client.call({"op": "register", "stream": "alice", "package_sha256": sha})
    client.scene()            # {"epoch", "version", "environment", "slots": {id: record}}
    client.move("bob", position=(0, 1.6, -2))   # coalesced, fire and forget (grab first)
    client.close()

One thread owns both sockets (ZeroMQ sockets are not thread-safe): a DEALER to the room's control
ROUTER, a SUB to its deltas. Other threads hand it requests through a queue and wait on a reply
slot. Deltas apply only in order (`scene_state.apply_delta`); a gap, another epoch (a restarted
room) or a snapshot that never came sends a new snapshot request, every `resync_interval_s` until
one arrives. While the room is silent (no beat for `lost_after_s`) the copy stays as it was, so a
render node keeps drawing what it has; heartbeats keep going out and reach the room when it is back.
"""
from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass

import zmq

from core.errors import HeadcastError
from room import wire
from room.endpoints import RoomEndpoints
from room.scene_state import apply_delta
from streaming.sockets import CurveClient, ManagedSocket, SocketOptions, open_socket

log = logging.getLogger(__name__)


class RoomRequestError(HeadcastError):
    """A request the room refused (``reason``) or never answered (``reason == "timeout"``)."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


@dataclass(frozen=True)
class RoomClientConfig:
    endpoints: RoomEndpoints
    name: str
    curve: CurveClient | None = None
    heartbeat_interval_s: float = 0.5
    lost_after_s: float = 3.0   # beats come 4 times a second; a loaded host can starve this thread for a second
    resync_interval_s: float = 1.0
    max_package_bytes: int = 64 << 20


class _Pending:
    __slots__ = ("blob", "event", "reply")

    def __init__(self):
        self.event = threading.Event()
        self.reply: dict | None = None
        self.blob: bytes | None = None


class RoomClient:
    def __init__(self, config: RoomClientConfig):
        self.config = config
        self._ids = itertools.count(1)
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._pending: dict[int, _Pending] = {}
        self._moves: dict[str, dict] = {}          # slot → newest move not yet sent (coalesced)
        self._lock = threading.Lock()
        self._scene: dict | None = None
        self._synced = threading.Event()
        self._changed = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._dealer: ManagedSocket | None = None
        self._sub: ManagedSocket | None = None
        self._last_beat = 0.0
        self._snapshot_asked = 0.0
        self.counters = {"deltas": 0, "resyncs": 0, "snapshots": 0, "room_lost": 0, "refused": 0, "moves_sent": 0,
                         "moves_coalesced": 0, "stale_deltas": 0}
        self.room_alive = False
        self.clocks: dict[str, dict] = {}     # stream → capture host → room mapping (from the beats)
        self.delta_times: list[tuple[int, str, int]] = []    # (version, op, t_received_ns), bounded

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> RoomClient:
        ep, cfg = self.config.endpoints, self.config
        ctx = zmq.Context()
        try:
            self._dealer = open_socket(zmq.DEALER, ep.control, bind=False, curve_client=cfg.curve, context=ctx,
                                       options=SocketOptions(linger_ms=0, sndhwm=256, rcvhwm=256,
                                                             maxmsgsize=cfg.max_package_bytes + (1 << 16)))
            self._sub = open_socket(zmq.SUB, ep.deltas, bind=False, curve_client=cfg.curve, context=ctx,
                                    options=SocketOptions(linger_ms=0, rcvhwm=4096, maxmsgsize=wire.MAX_JSON_BYTES,
                                                          subscribe=wire.DELTA_TOPIC))
        except BaseException:
            for s in (self._dealer, self._sub):
                if s is not None:
                    s.close()
            ctx.term()
            raise
        self._ctx = ctx
        self._thread = threading.Thread(target=self._run, name=f"headcast-room-{cfg.name}", daemon=True)
        self._thread.start()
        return self

    def close(self, leave: bool = False) -> None:
        if leave and self._thread is not None:
            try:
                self.call({"op": "remove", "slot": self.config.name}, timeout_s=1.0)
            except RoomRequestError:
                pass
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for s in (self._dealer, self._sub):
            if s is not None:
                s.close()
        self._dealer = self._sub = None
        if getattr(self, "_ctx", None) is not None:
            self._ctx.term()
            self._ctx = None

    def __enter__(self) -> RoomClient:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- what other threads call -------------------------------------------------------------
    def call(self, request: dict, blob: bytes | None = None, timeout_s: float = 5.0) -> tuple[dict, bytes | None]:
        """Sends one request and waits for its reply; raises `RoomRequestError` when refused or unanswered."""
        rid = next(self._ids)
        pending = _Pending()
        with self._lock:
            self._pending[rid] = pending
        self._outbox.put(({**request, "id": rid, "name": self.config.name}, blob))
        if not pending.event.wait(timeout_s):
            with self._lock:
                self._pending.pop(rid, None)
            raise RoomRequestError("timeout", f"the room did not answer {request.get('op')!r} within {timeout_s} s")
        answer = pending.reply or {}
        if not answer.get("ok"):
            self.counters["refused"] += 1
            raise RoomRequestError(str(answer.get("reason")), str(answer.get("error")))
        return answer, pending.blob

    def move(self, slot: str, position=None, rotation=None, scale=None) -> None:
        """Queues a move of a slot this participant holds; only the newest one per slot is sent."""
        edit = {"op": "move", "slot": slot}
        for key, value in (("position", position), ("rotation", rotation), ("scale", scale)):
            if value is not None:
                edit[key] = [float(v) for v in value] if key != "scale" else float(value)
        with self._lock:
            if slot in self._moves:
                self.counters["moves_coalesced"] += 1
            self._moves[slot] = edit

    def send(self, request: dict) -> None:
        """Fire and forget (a release the caller does not wait for)."""
        self._outbox.put(({**request, "id": None, "name": self.config.name}, None))

    def scene(self) -> dict | None:
        """A copy of the local scene (None until the first snapshot)."""
        with self._lock:
            if self._scene is None:
                return None
            return {**self._scene, "slots": {k: dict(v) for k, v in self._scene["slots"].items()}}

    def version(self) -> tuple[int, int] | None:
        with self._lock:
            return None if self._scene is None else (self._scene["epoch"], self._scene["version"])

    def wait_synced(self, timeout_s: float) -> bool:
        return self._synced.wait(timeout_s)

    def wait_until(self, predicate, timeout_s: float) -> bool:
        """Waits until predicate(scene) holds on the local copy (re-checked at every applied change)."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while True:
                if self._scene is not None and predicate(self._scene):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))

    # -- the socket thread ---------------------------------------------------------------------
    def _run(self) -> None:
        dealer, sub = self._dealer.sock, self._sub.sock
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(sub, zmq.POLLIN)
        next_heartbeat = 0.0
        self._ask_snapshot(dealer)
        while not self._stop.is_set():
            try:
                ready = dict(poller.poll(5))
            except zmq.ZMQError:
                return
            now = time.monotonic()
            if dealer in ready:
                self._read_replies(dealer)
            if sub in ready:
                self._read_deltas(sub, dealer)
            self._flush_outbox(dealer)
            if now >= next_heartbeat:
                next_heartbeat = now + self.config.heartbeat_interval_s
                self._send(dealer, {"op": "heartbeat", "id": None, "name": self.config.name})
            if self.room_alive and now - self._last_beat > self.config.lost_after_s:
                self.room_alive = False
                self.counters["room_lost"] += 1
                log.warning("room %s silent for %.1f s: keeping the scene as it was", self.config.endpoints.control,
                            self.config.lost_after_s)
            if not self._synced.is_set() and now - self._snapshot_asked > self.config.resync_interval_s:
                self._ask_snapshot(dealer)

    def _send(self, dealer, request: dict, blob: bytes | None = None) -> None:
        parts = [wire.encode(request)] + ([blob] if blob is not None else [])
        try:
            dealer.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            pass   # no room connected and the queue is full: a heartbeat or move that is stale anyway

    def _flush_outbox(self, dealer) -> None:
        while True:
            try:
                request, blob = self._outbox.get_nowait()
            except queue.Empty:
                break
            self._send(dealer, request, blob)
        with self._lock:
            moves, self._moves = self._moves, {}
        for edit in moves.values():
            self._send(dealer, {**edit, "id": None, "name": self.config.name})
            self.counters["moves_sent"] += 1

    def _ask_snapshot(self, dealer) -> None:
        self._snapshot_asked = time.monotonic()
        self._send(dealer, {"op": "hello", "id": 0, "name": self.config.name})

    def _read_replies(self, dealer) -> None:
        while True:
            try:
                parts = dealer.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                answer = wire.decode(parts[0], "room reply")
            except wire.WireError:
                continue
            rid = answer.get("id")
            if rid == 0 and answer.get("ok") and isinstance(answer.get("scene"), dict):
                self._take_snapshot(answer["scene"])
                continue
            with self._lock:
                pending = self._pending.pop(rid, None) if isinstance(rid, int) else None
            if pending is not None:
                pending.reply = answer
                pending.blob = parts[1] if len(parts) > 1 else None
                pending.event.set()
            elif not answer.get("ok"):
                self.counters["refused"] += 1   # a fire-and-forget edit the room refused (a move not held)

    def _take_snapshot(self, snap: dict) -> None:
        with self._changed:
            self._scene = {"epoch": snap.get("epoch"), "version": int(snap.get("version", 0)),
                           "environment": dict(snap.get("environment") or {}), "slots": dict(snap.get("slots") or {})}
            self.counters["snapshots"] += 1
            self._changed.notify_all()
        self._synced.set()

    def _read_deltas(self, sub, dealer) -> None:
        while True:
            try:
                parts = sub.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            if len(parts) != 2:
                continue
            try:
                delta = wire.decode(parts[1], "room delta")
            except wire.WireError:
                continue
            self._last_beat = time.monotonic()
            if not self.room_alive:
                self.room_alive = True
            with self._changed:
                scene = self._scene
                if scene is None or not self._synced.is_set():
                    continue   # a snapshot is on its way; deltas up to its version are in it
                if delta.get("op") == "beat":
                    if isinstance(delta.get("clocks"), dict):
                        self.clocks = delta["clocks"]
                    # PUB keeps order, so a beat follows every delta up to its version: a newer one
                    # means a delta was lost; another epoch means the room restarted.
                    if delta.get("epoch") != scene["epoch"] or not isinstance(delta.get("version"), int) \
                            or delta["version"] > scene["version"]:
                        self._resync_locked()
                    continue
                if delta.get("epoch") == scene["epoch"] and isinstance(delta.get("version"), int) \
                        and delta["version"] <= scene["version"]:
                    self.counters["stale_deltas"] += 1   # already in the snapshot
                    continue
                if apply_delta(scene, delta):
                    self.counters["deltas"] += 1
                    if len(self.delta_times) < 100_000:
                        self.delta_times.append((delta["version"], str(delta.get("op")), time.monotonic_ns()))
                    self._changed.notify_all()
                else:
                    self._resync_locked()

    def _resync_locked(self) -> None:
        self.counters["resyncs"] += 1
        self._synced.clear()
        self._snapshot_asked = 0.0   # asked at once by the loop


__all__ = ["RoomClient", "RoomClientConfig", "RoomRequestError"]
