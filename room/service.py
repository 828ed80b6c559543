"""The room service: the stream relay, the authoritative scene, the package store, on four sockets.

    service = RoomService(RoomConfig(base="tcp://127.0.0.1:7000", scene_file=Path("room.json")))
    service.start()           # sockets bound; the relay forwards on its own thread
    service.run(stop_event)   # the control loop (edits, heartbeats, expiry, beats, persistence)
    service.close()

One control loop applies every edit in the order the ROUTER socket delivered it, so two grabs of
one slot that arrive together give one owner and one refusal. Identity is the participant name
that the CURVE key maps to (the allow-list directory: ``NAME.key``, read through the ZAP User-Id
on the request's frame); a request naming someone else is refused. Without CURVE (loopback only)
the request's own ``name`` is taken on trust.

Persistence: the scene is written with core.atomic_files after every structural change at once
(register, release, remove, away), and moves at most every ``save_interval_s`` (a held avatar moves
at the display rate; rewriting and fsyncing a file 90 times a second buys nothing), so a kill -9
loses at most the last fraction of a second of a drag and never a placement that was let go.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from core.atomic_files import atomic_write_json
from core.strict_json import StrictJsonError, load_strict
from room import wire
from room.endpoints import RoomEndpoints
from room.package_store import DEFAULT_MAX_BYTES, PackageStore, PackageStoreError
from room.scene_state import EditRefused, RoomScene, RoomTimeouts
from streaming.room_relay import RelayConfig, StreamRelay, key_names_from_dir
from streaming.sockets import CurveServer, ManagedSocket, SocketOptions, open_socket, zap_user_id

log = logging.getLogger(__name__)

SCENE_OPS = ("register", "grab", "release", "move", "remove", "environment", "heartbeat")


@dataclass(frozen=True)
class RoomConfig:
    base: str = "tcp://127.0.0.1:7000"
    scene_file: Path | None = None        # persisted here (reloaded on start when it exists)
    packages_dir: Path | None = None      # default: <scene_file>.packages, else no store
    curve: CurveServer | None = None
    insecure: bool = False
    timeouts: RoomTimeouts = field(default_factory=RoomTimeouts)
    max_package_bytes: int = DEFAULT_MAX_BYTES
    beat_interval_s: float = 0.25
    save_interval_s: float = 0.2
    name: str = "room"


class RoomService:
    def __init__(self, config: RoomConfig):
        self.config = config
        self.endpoints = RoomEndpoints.from_base(config.base)
        self.key_names = key_names_from_dir(config.curve.allowed_clients_dir) if config.curve else {}
        now = time.monotonic()
        if config.scene_file is not None and Path(config.scene_file).exists():
            try:
                data = load_strict(Path(config.scene_file), f"room file {config.scene_file}")
            except StrictJsonError as exc:
                from room.scene_state import RoomSceneError

                raise RoomSceneError(str(exc)) from None
            self.scene = RoomScene.from_dict(data, now, f"room file {config.scene_file}")
        else:
            self.scene = RoomScene.new(config.name)
        packages = config.packages_dir
        if packages is None and config.scene_file is not None:
            packages = Path(str(config.scene_file) + ".packages")
        self.store = PackageStore(packages, config.max_package_bytes) if packages is not None else None
        if self.store is not None:
            # Validating a package needs torch; importing it inside the first upload stalled the one
            # control loop (beats, edits) for 5 s on the loaded machine, and every node took the room
            # for dead. Imported here, the validation itself costs ~40 ms of the loop per upload.
            import inference.avatar_package  # noqa: F401
        self.relay = StreamRelay(RelayConfig(self.endpoints.streams_in, self.endpoints.streams_out, config.curve,
                                             config.insecure), self.key_names)
        self.relay.set_owners(self.scene.stream_owners())
        self._control: ManagedSocket | None = None
        self.clock = None     # calibration.clock_service.ClockServer: capture hosts' clocks → the room's
        self._deltas: ManagedSocket | None = None
        self.counts: dict[str, int] = {"requests": 0, "applied": 0, "refused": 0, "malformed": 0, "saves": 0,
                                       "deltas": 0, "uploads": 0, "fetches": 0, "identity_refused": 0}
        self.refused_by_reason: dict[str, int] = {}
        self._dirty_since: float | None = None
        self._uploads_done: queue.SimpleQueue = queue.SimpleQueue()
        self._upload_lock = threading.Lock()
        self._last_beat = 0.0
        self.bound: dict[str, str] = {}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> RoomService:
        cfg = self.config
        self.relay.start()
        try:
            self._control = open_socket(zmq.ROUTER, self.endpoints.control, bind=True, curve_server=cfg.curve,
                                        insecure=cfg.insecure,
                                        options=SocketOptions(linger_ms=0, sndhwm=256, rcvhwm=256,
                                                              maxmsgsize=cfg.max_package_bytes + (1 << 16)))
            self._deltas = open_socket(zmq.PUB, self.endpoints.deltas, bind=True, curve_server=cfg.curve,
                                       insecure=cfg.insecure, options=SocketOptions(linger_ms=0, sndhwm=1024))
        except BaseException:
            self.close()
            raise
        from calibration.clock_service import ClockServer

        try:
            self.clock = ClockServer(self.endpoints.clock, curve_server=cfg.curve, insecure=cfg.insecure)
        except BaseException:
            self.close()
            raise
        self.bound = {"streams_in": self.relay.endpoints[0], "streams_out": self.relay.endpoints[1],
                      "control": self._control.endpoint, "deltas": self._deltas.endpoint, "clock": self.clock.endpoint}
        if cfg.scene_file is not None:
            self._save()   # the new epoch is on disk before anyone sees it
        self.scene.serving_from(time.monotonic())
        return self

    def close(self) -> None:
        if self._dirty_since is not None and self.config.scene_file is not None:
            self._save()
        self.relay.stop()
        if self.clock is not None:
            self.clock.close()
            self.clock = None
        for s in (self._control, self._deltas):
            if s is not None:
                s.close()
        self._control = self._deltas = None

    def __enter__(self) -> RoomService:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, stop: threading.Event) -> None:
        poller = zmq.Poller()
        poller.register(self._control.sock, zmq.POLLIN)
        while not stop.is_set():
            try:
                ready = dict(poller.poll(20))
            except zmq.ZMQError:
                return
            if ready:
                self._drain()
            self.tick(time.monotonic())

    # -- the loop's steps -------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._finish_uploads()
        for delta in self.scene.expire(now, self.config.timeouts):
            self._publish(delta, structural=True)
        if now - self._last_beat >= self.config.beat_interval_s:
            self._last_beat = now
            self._send_delta({"op": "beat", "epoch": self.scene.epoch, "version": self.scene.version,
                              "clocks": self._clock_mappings()})
        if self._dirty_since is not None and now - self._dirty_since >= self.config.save_interval_s:
            self._save()

    def _clock_mappings(self) -> dict:
        """capture host → room clock, per registered stream, as its capture node reported it. Only
        streams of the room's slots travel (a report under any other id is ignored here)."""
        if self.clock is None:
            return {}
        owned = self.scene.stream_owners()
        return {sid: r.mapping.as_dict() for sid, r in self.clock.reports().items() if sid in owned}

    def _drain(self) -> None:
        sock = self._control.sock
        while True:
            try:
                frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            self._handle(frames)

    def _identity(self, frame, request: dict) -> str | None:
        claimed = request.get("name")
        if self.config.curve is None:
            return claimed if isinstance(claimed, str) else None
        name = self.key_names.get(zap_user_id(frame) or "")
        if name is None or (claimed is not None and claimed != name):
            return None
        return name

    def _handle(self, frames) -> None:
        self.counts["requests"] += 1
        route = frames[0].bytes
        if len(frames) not in (2, 3):
            self.counts["malformed"] += 1
            return
        try:
            request = wire.decode(frames[1].bytes, "room request")
        except wire.WireError as exc:
            self.counts["malformed"] += 1
            self._reply(route, {"id": None, "ok": False, "reason": "malformed", "error": str(exc)})
            return
        who = self._identity(frames[1], request)
        if who is None:
            self.counts["identity_refused"] += 1
            self._reply(route, wire.refusal(request, "identity", "this key may not speak for that participant"))
            return
        op = request.get("op")
        blob = frames[2].bytes if len(frames) == 3 else None
        try:
            answer, payload = self._answer(who, op, request, blob, route)
            if answer is None:
                return        # answered later (an upload being validated)
        except (EditRefused, PackageStoreError) as exc:
            reason = getattr(exc, "reason", "package")
            self.counts["refused"] += 1
            self.refused_by_reason[reason] = self.refused_by_reason.get(reason, 0) + 1
            answer, payload = wire.refusal(request, reason, str(exc)), None
        if op != "heartbeat" or not answer.get("ok", True):
            self._reply(route, answer, payload)

    def _validate_later(self, route: bytes, request: dict, blob: bytes) -> None:
        """Package validation (hash, unpack, load_package: ~40 ms on a quiet host, seconds on a loaded
        one for the default avatar) runs on a worker thread, so beats and edits never wait for it;
        the reply goes out from the loop (`_finish_uploads`), which owns the socket."""
        def work():
            try:
                self.store.put(str(request.get("sha256")), blob)
                self._uploads_done.put((route, wire.reply(request, sha256=request.get("sha256")), None))
            except PackageStoreError as exc:
                self._uploads_done.put((route, wire.refusal(request, "package", str(exc)), exc))

        if not self._upload_lock.acquire(blocking=False):   # one at a time: bounds memory, never blocks the loop
            raise EditRefused("busy", "another package is being validated; send it again in a moment")
        threading.Thread(target=lambda: (work(), self._upload_lock.release()), name="headcast-room-upload",
                         daemon=True).start()

    def _finish_uploads(self) -> None:
        while True:
            try:
                route, answer, error = self._uploads_done.get_nowait()
            except queue.Empty:
                return
            if error is None:
                self.counts["uploads"] += 1
            else:
                self.counts["refused"] += 1
                self.refused_by_reason["package"] = self.refused_by_reason.get("package", 0) + 1
            self._reply(route, answer)

    def _answer(self, who: str, op, request: dict, blob: bytes | None, route: bytes = b""):
        now = time.monotonic()
        if op in ("hello", "snapshot"):
            if op == "hello":
                delta = self.scene.apply(who, {"op": "heartbeat"}, now)
                if delta is not None:
                    self._publish(delta, structural=True)
            return wire.reply(request, scene=self.scene.snapshot(), you=who), None
        if op == "upload":
            if self.store is None:
                raise EditRefused("no_store", "this room keeps no packages")
            self._validate_later(route, request, blob or b"")
            return None, None
        if op == "has":
            return wire.reply(request, has=bool(self.store and self.store.has(str(request.get("sha256"))))), None
        if op == "fetch":
            data = self.store.get(str(request.get("sha256"))) if self.store is not None else None
            if data is None:
                raise EditRefused("no_package", f"the room has no package {str(request.get('sha256'))[:16]}")
            self.counts["fetches"] += 1
            return wire.reply(request, sha256=request.get("sha256")), data
        if op == "stats":
            return wire.reply(request, stats=self.stats()), None
        if op not in SCENE_OPS:
            raise EditRefused("bad_op", f"unknown request {op!r}")
        if op == "register" and self.store is not None and not self.store.has(str(request.get("package_sha256"))):
            raise EditRefused("no_package", "upload the package before registering it")
        delta = self.scene.apply(who, request, now)
        if delta is not None:
            self._publish(delta, structural=op != "move")
        self.counts["applied"] += op != "heartbeat"
        return wire.reply(request, version=self.scene.version), None

    def _publish(self, delta: dict, structural: bool) -> None:
        self.relay.set_owners(self.scene.stream_owners())
        self._send_delta(delta)
        if self.config.scene_file is not None:
            if structural:
                self._save()
            elif self._dirty_since is None:
                self._dirty_since = time.monotonic()

    def _send_delta(self, delta: dict) -> None:
        try:
            self._deltas.sock.send_multipart([wire.DELTA_TOPIC, wire.encode(delta)], zmq.NOBLOCK)
            self.counts["deltas"] += delta.get("op") != "beat"
        except zmq.Again:
            pass

    def _reply(self, route: bytes, answer: dict, payload: bytes | None = None) -> None:
        parts = [route, wire.encode(answer)] + ([payload] if payload is not None else [])
        try:
            self._control.sock.send_multipart(parts, zmq.NOBLOCK)
        except zmq.ZMQError:
            pass   # the client went away (ROUTER drops unroutable replies)

    def _save(self) -> None:
        atomic_write_json(Path(self.config.scene_file), self.scene.to_dict())
        self._dirty_since = None
        self.counts["saves"] += 1

    def stats(self) -> dict:
        return {"epoch": self.scene.epoch, "version": self.scene.version, "slots": len(self.scene.slots),
                "requests": dict(self.counts), "refused_by_reason": dict(self.refused_by_reason),
                "relay": self.relay.counters().as_dict(),
                "packages_refused": self.store.refused if self.store is not None else 0,
                "clock_service": self.clock.stats() if self.clock is not None else None}


def serve(config: RoomConfig, stop: threading.Event, say=log.info) -> dict:
    """`headcast room serve`: binds, says where, runs until `stop`; returns the final statistics."""
    service = RoomService(config).start()
    try:
        b = service.bound
        say(f"room epoch {service.scene.epoch}, version {service.scene.version}, {len(service.scene.slots)} slot(s)"
            f"{' from ' + str(config.scene_file) if config.scene_file and service.scene.version else ''}")
        say(f"streams in {b['streams_in']}, out {b['streams_out']}, control {b['control']}, deltas {b['deltas']}, "
            f"clock {b['clock']}"
            f"{' (CURVE, ' + str(len(service.key_names)) + ' participant keys)' if config.curve else ''}")
        say(f"room listening on {config.base}")
        service.run(stop)
    finally:
        service.close()
    return service.stats()


__all__ = ["RoomConfig", "RoomService", "serve"]
