"""The room's scene authority as a state machine: ownership, refusals, heartbeats and grace,
persistence with a new epoch, deltas applied only in order, hostile numbers."""
from __future__ import annotations

import json
import time

import pytest

from room.scene_state import EditRefused, RoomScene, RoomSceneError, RoomTimeouts, apply_delta

SHA = "ab" * 32


def _room(*names):
    scene = RoomScene.new()
    for n in names:
        scene.apply(n, {"op": "register", "stream": n, "package_sha256": SHA}, 0.0)
    return scene


def test_a_grab_gives_one_owner_until_release_and_only_the_holder_moves():
    scene = _room("alice", "bob", "carol")
    scene.apply("bob", {"op": "grab", "slot": "alice"}, 1.0)
    with pytest.raises(EditRefused) as refused:
        scene.apply("carol", {"op": "grab", "slot": "alice"}, 1.0)
    assert refused.value.reason == "held"
    with pytest.raises(EditRefused):
        scene.apply("carol", {"op": "move", "slot": "alice", "position": [1, 1, 1]}, 1.0)
    v = scene.version
    d = scene.apply("bob", {"op": "move", "slot": "alice", "position": [1, 1.5, -2]}, 1.0)
    assert d["version"] == v + 1 and d["slot"]["position"] == [1.0, 1.5, -2.0]
    with pytest.raises(EditRefused):
        scene.apply("carol", {"op": "release", "slot": "alice"}, 1.0)
    scene.apply("bob", {"op": "release", "slot": "alice"}, 1.0)
    scene.apply("carol", {"op": "grab", "slot": "alice"}, 1.0)
    assert scene.slots["alice"].held_by == "carol"


def test_identity_rules_streams_and_removal():
    scene = _room("alice", "bob")
    with pytest.raises(EditRefused) as taken:
        scene.apply("bob", {"op": "register", "stream": "alice", "package_sha256": SHA}, 0.0)
    assert taken.value.reason == "stream_taken"
    with pytest.raises(EditRefused) as not_yours:
        scene.apply("bob", {"op": "remove", "slot": "alice"}, 0.0)
    assert not_yours.value.reason == "not_yours"
    for bad in ({"op": "launch"}, {"op": "__class__"}, {"op": 3}, "x"):
        with pytest.raises(EditRefused):
            scene.apply("bob", bad, 0.0)
    assert scene.stream_owners() == {"alice": "alice", "bob": "bob"}
    # Newcomers do not stand on each other.
    assert scene.slots["alice"].position != scene.slots["bob"].position


@pytest.mark.parametrize("edit", [
    {"position": [float("nan"), 0, 0]}, {"position": [1e9, 0, 0]}, {"position": [0, 0]},
    {"rotation": [0, 0, 0, 0]}, {"rotation": [1, 0, 0]}, {"scale": 0}, {"scale": 1e6}, {"position": "abc"},
])
def test_hostile_numbers_are_refused_and_leave_the_scene_unchanged(edit):
    scene = _room("alice")
    scene.apply("alice", {"op": "grab", "slot": "alice"}, 0.0)
    before = (scene.version, scene.slots["alice"].record())
    with pytest.raises(EditRefused):
        scene.apply("alice", {"op": "move", "slot": "alice", **edit}, 0.0)
    assert (scene.version, scene.slots["alice"].record()) == before


def test_a_vanished_node_loses_its_grabs_then_its_slot_after_the_grace_period_and_rejoins_in_place():
    t = RoomTimeouts(node_timeout_s=1.0, grace_s=5.0)
    scene = _room("alice", "bob")
    scene.apply("alice", {"op": "grab", "slot": "bob"}, 0.0)
    scene.apply("alice", {"op": "move", "slot": "bob", "position": [2, 1.6, -2]}, 0.0)
    scene.apply("bob", {"op": "heartbeat"}, 1.0)
    ops = [d["op"] for d in scene.expire(1.5, t)]            # alice silent since 0.0
    assert sorted(ops) == ["away", "release"] and scene.slots["bob"].held_by is None
    assert scene.slots["alice"].away_since_s == 1.5
    # Alice comes back within the grace period: same slot, same place.
    where = scene.slots["alice"].position
    assert scene.apply("alice", {"op": "heartbeat"}, 3.0)["op"] == "back"
    assert scene.slots["alice"].position == where and scene.slots["alice"].away_since_s is None
    # Bob vanishes for longer than node timeout + grace: his slot is freed.
    scene.apply("alice", {"op": "heartbeat"}, 9.0)
    assert [d["op"] for d in scene.expire(9.0, t)] == ["away"]
    scene.apply("alice", {"op": "heartbeat"}, 14.5)
    assert [d["op"] for d in scene.expire(14.5, t)] == ["remove"]
    assert "bob" not in scene.slots and "alice" in scene.slots


def test_persisted_scene_reloads_with_a_new_epoch_and_every_placement():
    scene = _room("alice", "bob")
    scene.apply("bob", {"op": "grab", "slot": "alice"}, 0.0)
    scene.apply("bob", {"op": "move", "slot": "alice", "position": [0.5, 1.2, -3], "rotation": [0, 0, 1, 0]}, 0.0)
    data = scene.to_dict()
    again = RoomScene.from_dict(data, now_s=10.0)
    assert again.epoch != scene.epoch and again.version == scene.version
    assert again.slots["alice"].position == (0.5, 1.2, -3.0) and again.slots["alice"].rotation == (0, 0, 1, 0)
    assert again.slots["alice"].held_by is None and again.slots["alice"].away_since_s == 10.0
    bad = dict(data, slots=[dict(data["slots"][0], scale=-1)])
    with pytest.raises(RoomSceneError):
        RoomScene.from_dict(bad, 0.0)
    twice = dict(data, slots=[data["slots"][0], data["slots"][0]])
    with pytest.raises(RoomSceneError):
        RoomScene.from_dict(twice, 0.0)


def test_deltas_apply_only_in_order_on_a_nodes_copy():
    scene = _room("alice")
    copy = scene.snapshot()
    scene.apply("alice", {"op": "grab", "slot": "alice"}, 0.0)
    d1 = scene.apply("alice", {"op": "move", "slot": "alice", "position": [1, 1, 1]}, 0.0)
    d2 = scene.apply("alice", {"op": "move", "slot": "alice", "position": [2, 1, 1]}, 0.0)
    assert not apply_delta(copy, d2)                 # d0/d1 missing: resync
    assert not apply_delta(copy, dict(d1, epoch=copy["epoch"] + 1))
    fresh = scene.snapshot()
    d3 = scene.apply("alice", {"op": "remove", "slot": "alice"}, 0.0)
    assert apply_delta(fresh, d3) and fresh["slots"] == {} and fresh["version"] == scene.version


def test_capture_clock_maps_through_the_rooms_clock_onto_the_render_hosts():
    from calibration.clock import ClockMapping, through_common_clock

    # capture = room − 5 s (+20 ppm), render = room + 3 s (−10 ppm): capture → render ≈ +8 s.
    cap = ClockMapping(5e9, 20e-6, 1_000_000_000_000, 30, 200_000, 100_000.0)
    ren = ClockMapping(-3e9, -10e-6, 2_000_000_000_000, 30, 300_000, 150_000.0)
    m = through_common_clock(cap, ren)
    for t in (1_000_000_000_000, 1_000_000_000_000 + 60_000_000_000):
        expected = ren.to_local(cap.to_remote(t))
        assert abs(m.to_remote(t) - expected) < 1_000          # within a microsecond over a minute
    assert m.uncertainty_ns == 250_000.0 and abs(m.drift - 30e-6) < 1e-9


def test_a_reloaded_rooms_grace_period_starts_when_it_serves_not_when_it_read_the_file(tmp_path):
    """The room reads its file, then imports the package validator (torch) and binds its sockets; on
    a loaded CI host that took longer than the grace period, and the first tick freed every slot."""
    from test_room_service import _base

    from room.service import RoomConfig, RoomService

    scene_file = tmp_path / "room.json"
    scene_file.write_text(json.dumps(_room("alice", "bob").to_dict()))
    config = RoomConfig(base=_base(), scene_file=scene_file, timeouts=RoomTimeouts(node_timeout_s=1.0, grace_s=0.5))
    service = RoomService(config)
    time.sleep(0.8)                       # a slow start-up, longer than the grace period
    with service:
        now = time.monotonic()
        service.tick(now)
        assert set(service.scene.snapshot()["slots"]) == {"alice", "bob"}
        assert all(v["away"] for v in service.scene.snapshot()["slots"].values())
        service.scene.apply("alice", {"op": "heartbeat"}, now + 0.2)   # alice's node is back in time
        service.tick(now + 0.7)           # bob's grace is over, counted from when the room served
        assert set(service.scene.snapshot()["slots"]) == {"alice"}
