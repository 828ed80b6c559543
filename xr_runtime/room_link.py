"""The render node's view of a shared room: the room's scene as the node's scene, and back.

    link = RoomSceneLink(client, me="alice", mirror=False)
    scene = link.render_scene(packages)      # xr_runtime Scene of the slots this node shows
    node = RenderNode(scene, ..., scene_link=link)   # placements follow the room each frame
    link.needs_restart(scene)                # a slot appeared (or changed package): rebuild the node

What the render loop calls per frame (`RenderNode._follow_link`, `_apply_grab`): `placement(stream)`
— the room's placement, or None when the slot is gone (the avatar is not drawn); `grabbed` /
`moved` / `released` — a local grab becomes a grab request, moves (coalesced by the client, sent
only while the room says this node holds the slot) and a release. The room's word wins: a grab the
room refused leaves the avatar where the room has it.

The local scene copy comes from `room.client.RoomClient`; when the room is unreachable the copy
keeps its last state, so the node keeps drawing what it had.
"""
from __future__ import annotations

import logging
from pathlib import Path

from room.client import RoomClient
from xr_runtime.scene.scene_file import AvatarSlot, Environment, Scene, Transform

log = logging.getLogger(__name__)


class RoomSceneLink:
    def __init__(self, client: RoomClient, me: str, mirror: bool = False):
        self.client = client
        self.me = me
        self.mirror = mirror
        self._cache_key = None
        self._by_stream: dict[str, tuple[str, dict]] = {}
        self.grab_requests = 0
        self.moves = 0

    # -- the slots this node shows --------------------------------------------------------------
    def wanted_slots(self, scene: dict | None = None) -> dict[str, dict]:
        """slot id → record for the slots this node draws (everyone else's; its own with mirror)."""
        scene = scene if scene is not None else self.client.scene()
        if scene is None:
            return {}
        return {sid: rec for sid, rec in scene["slots"].items() if self.mirror or rec["participant"] != self.me}

    def render_scene(self, packages: dict[str, Path]) -> Scene:
        """The room's scene as a render node scene: the wanted slots whose packages are here."""
        scene = self.client.scene() or {"slots": {}, "environment": {}}
        slots = []
        for sid, rec in sorted(self.wanted_slots(scene).items()):
            path = packages.get(rec["package_sha256"])
            if path is None:
                continue
            slots.append(AvatarSlot(Path(path), rec["stream"],
                                    Transform(tuple(rec["position"]), tuple(rec["rotation"]), rec["scale"])))
        env = scene.get("environment") or {}
        return Scene(slots, Environment(kind=env.get("kind", "room"), scale=env.get("scale", 1.0)),
                     name=f"room {self.client.config.endpoints.control}")

    def needs_restart(self, rendered: Scene, packages: dict[str, Path]) -> bool:
        """True when the room has a slot to show that `rendered` lacks (or shows with another package)."""
        have = {(slot.stream, Path(slot.package).name) for slot in rendered.avatars}
        for rec in self.wanted_slots().values():
            path = packages.get(rec["package_sha256"])
            key = (rec["stream"], Path(path).name if path else None)
            if key not in have and path is not None:
                return True
        return False

    # -- per frame ------------------------------------------------------------------------------
    def _slots_by_stream(self) -> dict[str, tuple[str, dict]]:
        key = self.client.version()
        if key != self._cache_key:
            scene = self.client.scene() or {"slots": {}}
            self._by_stream = {rec["stream"]: (sid, rec) for sid, rec in scene["slots"].items()}
            self._cache_key = key
        return self._by_stream

    def placement(self, stream: str) -> Transform | None:
        entry = self._slots_by_stream().get(stream)
        if entry is None:
            return None
        rec = entry[1]
        return Transform(tuple(rec["position"]), tuple(rec["rotation"]), float(rec["scale"]))

    def held_here(self, stream: str) -> bool:
        entry = self._slots_by_stream().get(stream)
        return entry is not None and entry[1].get("held_by") == self.me

    def grabbed(self, stream: str) -> None:
        entry = self._slots_by_stream().get(stream)
        if entry is not None:
            self.grab_requests += 1
            self.client.send({"op": "grab", "slot": entry[0]})

    def moved(self, stream: str, transform: Transform) -> None:
        entry = self._slots_by_stream().get(stream)
        if entry is not None and entry[1].get("held_by") == self.me:
            self.moves += 1
            self.client.move(entry[0], position=transform.position, rotation=transform.rotation,
                             scale=transform.scale)

    def released(self, stream: str) -> None:
        entry = self._slots_by_stream().get(stream)
        if entry is not None:
            self.client.send({"op": "release", "slot": entry[0]})

    def summary(self) -> dict:
        version = self.client.version()
        scene = self.client.scene() or {"slots": {}}
        return {"epoch": version[0] if version else None, "version": version[1] if version else None,
                "room_alive": self.client.room_alive, "client": dict(self.client.counters),
                "grab_requests": self.grab_requests, "moves": self.moves,
                "slots": {sid: {"position": rec["position"], "held_by": rec.get("held_by"), "away": rec.get("away")}
                          for sid, rec in scene["slots"].items()}}


__all__ = ["RoomSceneLink"]
