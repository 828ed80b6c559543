"""A render node in a room (real room service and clients on loopback, real headless EGL loop): a
controller grab becomes the room's grab, the carried avatar's moves reach the other participants,
the release frees it; a grab the room refused leaves the avatar where the room has it; a slot the
room removes is no longer drawn."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

pytest.importorskip("xr_runtime.gl.egl_context")

from room.client import RoomClient, RoomClientConfig  # noqa: E402
from room.endpoints import RoomEndpoints  # noqa: E402
from room.service import RoomConfig, RoomService  # noqa: E402
from test_room_service import _base  # noqa: E402
from xr_runtime.avatars.assets import AvatarAssets  # noqa: E402
from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture  # noqa: E402
from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig  # noqa: E402
from xr_runtime.render_node import RenderNode  # noqa: E402
from xr_runtime.room_link import RoomSceneLink  # noqa: E402
from xr_runtime.scene.hand import HandState  # noqa: E402

pytestmark = pytest.mark.usefixtures("egl_available")
SHA = "cd" * 32


@pytest.fixture
def room():
    base = _base()
    service = RoomService(RoomConfig(base=base)).start()   # no store: registration needs no upload
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    clients = []

    def client(name):
        c = RoomClient(RoomClientConfig(RoomEndpoints.from_base(base), name)).start()
        assert c.wait_synced(5)
        clients.append(c)
        return c
    yield service, client
    for c in clients:
        c.close()
    stop.set()
    thread.join(5)
    service.close()


def _node(link: RoomSceneLink, tmp_path):
    scene = link.render_scene({SHA: tmp_path})
    source = StaticAvatarStateSource({s.stream: StaticStream(dev_texture(), np.zeros(2, np.float32))
                                      for s in scene.avatars})
    assets = [AvatarAssets(dev_head_mesh(), dev_texture()) for _ in scene.avatars]
    return RenderNode(scene, assets, source, scene_link=link)


def test_a_controller_grab_in_one_render_node_moves_the_avatar_for_everyone(room, tmp_path):
    service, client = room
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    for c in (alice, bob):
        c.call({"op": "register", "stream": c.config.name, "package_sha256": SHA})
    assert carol.wait_until(lambda s: {"alice", "bob"} <= set(s["slots"]), 2)
    start = tuple(carol.scene()["slots"]["alice"]["position"])
    link = RoomSceneLink(carol, "carol")
    node = _node(link, tmp_path)

    def hands(frame: int):
        # Squeeze at alice's place, wait for the room's grant, carry her 0.3 m left, let go.
        if frame < 3:
            return {"right": HandState(True, start, (0, 0, 0, 1), 0.0)}
        dx = -0.3 * min(1.0, max(0, frame - 12) / 10)
        pos = (start[0] + dx, start[1], start[2])
        return {"right": HandState(True, pos, (0, 0, 0, 1), 1.0 if frame < 30 else 0.0)}

    stats = node.run(HeadlessBackend(HeadlessConfig(width=64, height=48, fps=30, paced=True, hands_script=hands)),
                     max_frames=40)
    assert bob.wait_until(lambda s: abs(s["slots"]["alice"]["position"][0] - (start[0] - 0.3)) < 1e-3
                          and s["slots"]["alice"]["held_by"] is None, 3), bob.scene()["slots"]["alice"]
    assert link.grab_requests == 1 and link.moves > 0 and carol.counters["refused"] == 0
    assert stats["room"]["slots"]["alice"]["held_by"] is None
    assert service.stats()["requests"]["refused"] == 0


def test_a_refused_grab_leaves_the_avatar_where_the_room_has_it_and_removed_slots_vanish(room, tmp_path):
    service, client = room
    alice, bob, carol = client("alice"), client("bob"), client("carol")
    for c in (alice, bob):
        c.call({"op": "register", "stream": c.config.name, "package_sha256": SHA})
    bob.call({"op": "grab", "slot": "alice"})                 # bob holds alice's avatar
    assert carol.wait_until(lambda s: s["slots"].get("alice", {}).get("held_by") == "bob", 2)
    start = tuple(carol.scene()["slots"]["alice"]["position"])
    link = RoomSceneLink(carol, "carol")
    node = _node(link, tmp_path)

    def hands(frame: int):
        if frame == 20:
            bob.call({"op": "remove", "slot": "bob"}, timeout_s=2)   # bob leaves the room
        dx = -0.3 * min(1.0, max(0, frame - 3) / 10)
        return {"right": HandState(True, (start[0] + dx, start[1], start[2]), (0, 0, 0, 1),
                                   0.0 if frame < 2 else 1.0)}

    stats = node.run(HeadlessBackend(HeadlessConfig(width=64, height=48, fps=30, paced=True, hands_script=hands)),
                     max_frames=30)
    assert carol.scene()["slots"]["alice"]["position"] == list(start)       # the room never moved her
    assert stats["streams"]["alice"]["position"] == pytest.approx(list(start), abs=1e-4)   # nor did carol's node
    assert link.moves == 0 and service.stats()["refused_by_reason"].get("held") == 1
    assert not stats["streams"]["bob"]["visible"] and stats["streams"]["alice"]["visible"]
    time.sleep(0.1)


def test_mirror_adds_ones_own_slot_and_packages_not_here_are_left_out(room, tmp_path):
    service, client = room
    alice, bob = client("alice"), client("bob")
    alice.call({"op": "register", "stream": "alice", "package_sha256": SHA})
    bob.call({"op": "register", "stream": "bob", "package_sha256": "ef" * 32})
    assert alice.wait_until(lambda s: {"alice", "bob"} <= set(s["slots"]), 2)
    plain, mirror = RoomSceneLink(alice, "alice"), RoomSceneLink(alice, "alice", mirror=True)
    assert set(plain.wanted_slots()) == {"bob"} and set(mirror.wanted_slots()) == {"alice", "bob"}
    # Only slots whose package is here are rendered; one arriving later asks for a rebuild.
    scene = mirror.render_scene({SHA: tmp_path})
    assert [s.stream for s in scene.avatars] == ["alice"]
    assert not mirror.needs_restart(scene, {SHA: tmp_path})
    assert mirror.needs_restart(scene, {SHA: tmp_path, "ef" * 32: tmp_path / "bob"})
