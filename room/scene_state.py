"""The room's authoritative scene as a pure state machine: slots, placements, environment, grabs.

    scene = RoomScene.new()
    delta = scene.apply("alice", {"op": "register", "stream": "alice", "package_sha256": sha}, now)
    scene.apply("bob", {"op": "grab", "slot": "alice"}, now)          # bob holds it
    scene.apply("carol", {"op": "grab", "slot": "alice"}, now)        # EditRefused: held by bob

No sockets, no clocks of its own (`now` is passed in), no files: the service (`room.service`) feeds
it edits in the order its one control socket received them, publishes the deltas it returns and
persists `to_dict()`. Every applied edit bumps ``version`` by exactly one and yields one delta that
carries the slot's whole record after the change, so a node that has version v applies delta v+1
and knows it missed something when the next one is not v+1. ``epoch`` changes every time a room
(re)starts from its file: nodes that see another epoch re-request the snapshot.

Who may do what (the identity is the participant name the service derived from the CURVE key):
a participant registers (or re-registers) its own slot only, under a stream id no one else holds;
anyone may grab a slot nobody holds; only the holder moves it or releases it; a participant may
remove only its own slot. A participant that stops sending heartbeats for ``node_timeout_s`` loses
its grabs and its slot turns ``away``; an away slot is kept (placement and all) for ``grace_s`` and
then removed, so a participant that rejoins within that time resumes where it stood.

Numbers are checked like the scene file's (`xr_runtime/scene/scene_file.py`, which this room may not
import): finite, positions within ±10 km, unit quaternions within 10 % (normalised), scales in
(0, 100]. The JSON form is schema-checked with `core.strict_json` on load.
"""
from __future__ import annotations

import math
import re
import secrets
from dataclasses import dataclass, field

from core.errors import HeadcastError
from core.strict_json import describe, schema_errors

FORMAT_VERSION = 1
MAX_SLOTS = 64
MAX_COORDINATE_M = 10_000.0
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_ROTATION = (1.0, 0.0, 0.0, 0.0)

_COORD = {"type": "number", "minimum": -MAX_COORDINATE_M, "maximum": MAX_COORDINATE_M}
_VEC3 = {"type": "array", "items": _COORD, "minItems": 3, "maxItems": 3}
_QUAT = {"type": "array", "items": {"type": "number", "minimum": -2, "maximum": 2}, "minItems": 4, "maxItems": 4}
_SLOT = {
    "type": "object",
    "required": ["participant", "stream", "package_sha256", "position", "rotation", "scale"],
    "additionalProperties": False,
    "properties": {
        "participant": {"type": "string", "pattern": _NAME_RE.pattern},
        "stream": {"type": "string", "pattern": _NAME_RE.pattern},
        "package_sha256": {"type": "string", "pattern": _SHA_RE.pattern},
        "position": _VEC3, "rotation": _QUAT,
        "scale": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
    },
}
ROOM_FILE_SCHEMA = {
    "type": "object",
    "required": ["format", "epoch", "version", "environment", "slots"],
    "additionalProperties": False,
    "properties": {
        "format": {"const": FORMAT_VERSION},
        "room": {"type": "string"},
        "epoch": {"type": "integer", "minimum": 0},
        "version": {"type": "integer", "minimum": 0},
        "environment": {"type": "object", "additionalProperties": False,
                        "properties": {"kind": {"enum": ["room", "empty"]},
                                       "scale": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}}},
        "slots": {"type": "array", "maxItems": MAX_SLOTS, "items": _SLOT},
    },
}


class RoomSceneError(HeadcastError, ValueError):
    """A room file that is not a valid room scene."""


class EditRefused(HeadcastError, ValueError):
    """An edit the room does not apply; ``reason`` is a short code the client can count."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        super().__init__(f"{reason}: {detail}")


@dataclass
class Slot:
    participant: str
    stream: str
    package_sha256: str
    position: tuple[float, float, float] = (0.0, 1.6, -1.0)
    rotation: tuple[float, float, float, float] = DEFAULT_ROTATION
    scale: float = 1.0
    held_by: str | None = None          # the participant whose grab holds it (not persisted)
    away_since_s: float | None = None   # its participant's node stopped answering (not persisted)

    def record(self) -> dict:
        return {"participant": self.participant, "stream": self.stream, "package_sha256": self.package_sha256,
                "position": list(self.position), "rotation": list(self.rotation), "scale": self.scale,
                "held_by": self.held_by, "away": self.away_since_s is not None}

    def persisted(self) -> dict:
        r = self.record()
        del r["held_by"], r["away"]
        return r


@dataclass
class RoomTimeouts:
    node_timeout_s: float = 3.0    # heartbeats missing this long: the node is gone (grabs released)
    grace_s: float = 30.0          # an away slot is kept this long, then freed


@dataclass
class RoomScene:
    epoch: int
    version: int = 0
    environment: dict = field(default_factory=lambda: {"kind": "room", "scale": 1.0})
    slots: dict[str, Slot] = field(default_factory=dict)      # slot id (= participant name) → slot
    last_seen_s: dict[str, float] = field(default_factory=dict)
    name: str = "room"

    @classmethod
    def new(cls, name: str = "room") -> RoomScene:
        return cls(epoch=secrets.randbelow(1 << 31), name=name)

    # -- persistence ------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": FORMAT_VERSION, "room": self.name, "epoch": self.epoch, "version": self.version,
                "environment": dict(self.environment), "slots": [s.persisted() for s in self.slots.values()]}

    @classmethod
    def from_dict(cls, data, now_s: float, what: str = "room file") -> RoomScene:
        """A reloaded room: a new epoch (nodes resynchronise), every slot away until its participant's
        node is heard from again (the grace period runs from the reload, or from `serving_from`)."""
        errors = schema_errors(data, ROOM_FILE_SCHEMA)
        if errors:
            raise RoomSceneError(f"{what} invalid {describe(errors[0])}")
        scene = cls(epoch=(int(data["epoch"]) + 1) % (1 << 31), version=int(data["version"]),
                    environment=dict(data["environment"]), name=str(data.get("room", "room")))
        for raw in data["slots"]:
            try:
                slot = Slot(raw["participant"], raw["stream"], raw["package_sha256"],
                            _position(raw["position"]), _rotation(raw["rotation"]), _scale(raw["scale"]),
                            away_since_s=now_s)
            except EditRefused as exc:
                raise RoomSceneError(f"{what}: slot {raw['participant']}: {exc}") from None
            if slot.participant in scene.slots or any(s.stream == slot.stream for s in scene.slots.values()):
                raise RoomSceneError(f"{what}: participant or stream {slot.participant!r} appears twice")
            scene.slots[slot.participant] = slot
        return scene

    def serving_from(self, now_s: float) -> None:
        """The room starts answering at `now_s`: slots still away since the reload start their grace
        period here. Reading the file comes before the package validator's torch import and binding
        the sockets, which took more than a 4 s grace on a loaded CI host; timed from the read, every
        reloaded slot was freed before its participant's first heartbeat could arrive."""
        for slot in self.slots.values():
            if slot.away_since_s is not None and slot.participant not in self.last_seen_s:
                slot.away_since_s = max(slot.away_since_s, now_s)

    def snapshot(self) -> dict:
        return {"epoch": self.epoch, "version": self.version, "environment": dict(self.environment),
                "slots": {sid: s.record() for sid, s in self.slots.items()}}

    def stream_owners(self) -> dict[str, str]:
        return {s.stream: s.participant for s in self.slots.values()}

    # -- edits ------------------------------------------------------------------------------
    def apply(self, who: str, edit: dict, now_s: float) -> dict | None:
        """Applies one edit by participant `who`; returns its delta, or None when nothing changed
        (a heartbeat). Raises `EditRefused` and leaves the scene as it was."""
        if not isinstance(who, str) or not _NAME_RE.match(who):
            raise EditRefused("bad_identity", f"participant name {who!r}")
        op = edit.get("op") if isinstance(edit, dict) else None
        handler = getattr(self, f"_op_{op}", None) if isinstance(op, str) and op.isidentifier() else None
        if handler is None:
            raise EditRefused("bad_op", f"unknown edit {op!r}")
        return handler(who, edit, now_s)

    def _slot(self, edit: dict) -> Slot:
        sid = edit.get("slot")
        slot = self.slots.get(sid) if isinstance(sid, str) else None
        if slot is None:
            raise EditRefused("no_slot", f"no slot {sid!r}")
        return slot

    def _delta(self, op: str, slot_id: str, slot: Slot | None) -> dict:
        self.version += 1
        return {"epoch": self.epoch, "version": self.version, "op": op, "slot_id": slot_id,
                "slot": slot.record() if slot is not None else None}

    def _op_heartbeat(self, who: str, edit: dict, now_s: float) -> dict | None:
        self.last_seen_s[who] = now_s
        slot = self.slots.get(who)
        if slot is not None and slot.away_since_s is not None:
            slot.away_since_s = None
            return self._delta("back", who, slot)
        return None

    def _op_register(self, who: str, edit: dict, now_s: float) -> dict:
        stream, sha = edit.get("stream"), edit.get("package_sha256")
        if not isinstance(stream, str) or not _NAME_RE.match(stream):
            raise EditRefused("bad_stream", f"stream id {stream!r}")
        if not isinstance(sha, str) or not _SHA_RE.match(sha):
            raise EditRefused("bad_package", f"package sha256 {sha!r}")
        for other in self.slots.values():
            if other.stream == stream and other.participant != who:
                raise EditRefused("stream_taken", f"stream {stream!r} belongs to {other.participant}")
        self.last_seen_s[who] = now_s
        slot = self.slots.get(who)
        if slot is None:
            if len(self.slots) >= MAX_SLOTS:
                raise EditRefused("room_full", f"{MAX_SLOTS} slots")
            position, rotation = self._free_position()
            slot = Slot(who, stream, sha, position=position, rotation=rotation)
            self.slots[who] = slot
        else:  # rejoin: the placement stays where the room has it
            slot.stream, slot.package_sha256, slot.away_since_s = stream, sha, None
        return self._delta("slot", who, slot)

    def _free_position(self) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
        """Newcomers stand 1.5 m from the viewer's start, on the first free place of an arc in front of
        it (every 20°, alternating right and left of straight ahead), turned to face it."""
        taken = [s.position for s in self.slots.values()]
        for i in range(MAX_SLOTS):
            k = (i + 1) // 2 * (1 if i % 2 else -1)
            angle = math.radians(20.0 * k)
            distance = 1.5 + 0.5 * (abs(k) // 9)
            p = (round(distance * math.sin(angle), 4), 1.6, round(-distance * math.cos(angle), 4))
            if all(math.dist(p, q) > 0.3 for q in taken):
                return p, (math.cos(-angle / 2), 0.0, math.sin(-angle / 2), 0.0)
        return (0.0, 1.6, -1.0), DEFAULT_ROTATION

    def _op_grab(self, who: str, edit: dict, now_s: float) -> dict:
        slot = self._slot(edit)
        if slot.held_by is not None and slot.held_by != who:
            raise EditRefused("held", f"slot {slot.participant} is held by {slot.held_by}")
        slot.held_by = who
        return self._delta("grab", slot.participant, slot)

    def _op_release(self, who: str, edit: dict, now_s: float) -> dict:
        slot = self._slot(edit)
        if slot.held_by != who:
            raise EditRefused("not_holder", f"slot {slot.participant} is not held by {who}")
        slot.held_by = None
        return self._delta("release", slot.participant, slot)

    def _op_move(self, who: str, edit: dict, now_s: float) -> dict:
        slot = self._slot(edit)
        if slot.held_by != who:
            raise EditRefused("not_holder", f"grab slot {slot.participant} before moving it")
        position = _position(edit["position"]) if "position" in edit else slot.position
        rotation = _rotation(edit["rotation"]) if "rotation" in edit else slot.rotation
        scale = _scale(edit["scale"]) if "scale" in edit else slot.scale
        slot.position, slot.rotation, slot.scale = position, rotation, scale
        return self._delta("move", slot.participant, slot)

    def _op_remove(self, who: str, edit: dict, now_s: float) -> dict:
        slot = self._slot(edit)
        if slot.participant != who:
            raise EditRefused("not_yours", f"slot {slot.participant} belongs to its participant")
        del self.slots[slot.participant]
        return self._delta("remove", slot.participant, None)

    def _op_environment(self, who: str, edit: dict, now_s: float) -> dict:
        kind, scale = edit.get("kind", self.environment.get("kind")), edit.get("scale", 1.0)
        if kind not in ("room", "empty"):
            raise EditRefused("bad_environment", f"kind {kind!r}")
        self.environment = {"kind": kind, "scale": _scale(scale, 1000.0)}
        self.version += 1
        return {"epoch": self.epoch, "version": self.version, "op": "environment", "slot_id": None, "slot": None,
                "environment": dict(self.environment)}

    # -- time -------------------------------------------------------------------------------
    def expire(self, now_s: float, timeouts: RoomTimeouts) -> list[dict]:
        """Nodes silent past the timeout lose their grabs and their slot turns away; away slots past
        the grace period are freed. Returns the deltas, in the order they were applied."""
        deltas = []
        gone = {who for who, t in self.last_seen_s.items() if now_s - t > timeouts.node_timeout_s}
        for who in sorted(gone):
            del self.last_seen_s[who]
        for slot in list(self.slots.values()):
            if slot.held_by is not None and slot.held_by in gone:
                slot.held_by = None
                deltas.append(self._delta("release", slot.participant, slot))
            if slot.participant in gone and slot.away_since_s is None:
                slot.away_since_s = now_s
                deltas.append(self._delta("away", slot.participant, slot))
        for slot in list(self.slots.values()):
            if slot.away_since_s is not None and now_s - slot.away_since_s > timeouts.grace_s \
                    and slot.participant not in self.last_seen_s:
                del self.slots[slot.participant]
                deltas.append(self._delta("remove", slot.participant, None))
        return deltas


def apply_delta(snapshot: dict, delta: dict) -> bool:
    """A node's copy of the scene (a `snapshot()` dict) advanced by one delta; False when the delta
    is not the next one (another epoch, or a version gap): the node must fetch a new snapshot."""
    if delta.get("epoch") != snapshot.get("epoch") or delta.get("version") != snapshot.get("version", -1) + 1:
        return False
    if delta.get("op") == "environment":
        snapshot["environment"] = dict(delta.get("environment") or {})
    elif delta.get("slot") is None:
        snapshot["slots"].pop(delta.get("slot_id"), None)
    else:
        snapshot["slots"][delta["slot_id"]] = dict(delta["slot"])
    snapshot["version"] = delta["version"]
    return True


def _finite(values, what: str) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise EditRefused("bad_number", f"{what} {values!r}") from None
    if not all(math.isfinite(v) for v in out):
        raise EditRefused("bad_number", f"{what} {values!r}")
    return out


def _position(p) -> tuple[float, float, float]:
    out = _finite(p, "position")
    if len(out) != 3 or any(abs(v) > MAX_COORDINATE_M for v in out):
        raise EditRefused("bad_number", f"position {p!r}")
    return out


def _rotation(q) -> tuple[float, float, float, float]:
    out = _finite(q, "rotation")
    norm = math.sqrt(sum(v * v for v in out)) if len(out) == 4 else 0.0
    if len(out) != 4 or abs(norm - 1.0) > 0.1:
        raise EditRefused("bad_number", f"rotation {q!r} is not a unit quaternion (w, x, y, z)")
    return tuple(v / norm for v in out)


def _scale(s, maximum: float = 100.0) -> float:
    (out,) = _finite([s], "scale")
    if not (0.0 < out <= maximum):
        raise EditRefused("bad_number", f"scale {s!r}")
    return out


__all__ = ["ROOM_FILE_SCHEMA", "EditRefused", "RoomScene", "RoomSceneError", "RoomTimeouts", "Slot", "apply_delta"]
