"""Issue 15's end-to-end test: a room and three participants, each `headcast join` with its capture
node on a sample clip and a headless render node, all real processes on loopback.

One run, in phases: every render node shows the other two avatars, live, their expressions
changing; a move made through the room reaches every render node; `kill -9` of a participant
(its capture node dies with it) makes its stream go lost on the others, its slot goes away and is
freed after the grace period, and it rejoins; `kill -9` of the room leaves the render nodes
rendering, and the restarted room resynchronises them with the placement kept.

The participants are ended by SIGTERM in a fixed order (bob, carol, alice), not by --seconds: with
a 60 s lifetime a loaded CI host ran the phases past bob's end, so bob had left cleanly before the
restarted room could resynchronise three slots."""
from __future__ import annotations

import os
import threading
import time

import pytest
from _processes import Node
from test_room_service import _base, _client, _room

from tools.samples import sample_path

LIFETIME = 400  # only a cap against a run left behind; every participant is ended by SIGTERM


@pytest.fixture(scope="module")
def avatar():
    from tools.cmd_avatar import ensure_default_avatar

    return ensure_default_avatar(quick=True, log=lambda *_: None)


def _join(tmp_path, base, name, avatar, clip, seconds=LIFETIME) -> Node:
    return Node(["join", base, "--name", name, "--avatar", str(avatar), "--video", str(sample_path(clip)),
                 "--backend", "headless", "--seconds", str(seconds), "--size", "96x72", "--fps", "15",
                 "--packages", str(tmp_path / f"{name}-packages"), "--capture-log", str(tmp_path / f"{name}.capture.log"),
                 "--heartbeat", "0.3"],
                json_path=tmp_path / f"{name}.json", ready="joined room", timeout=90)


def _captures_of(name: str, base: str) -> list[int]:
    """Capture node processes streaming `name` into this room (from /proc)."""
    port = base.rsplit(":", 1)[1]
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"capture" in cmd and name.encode() in cmd and any(port.encode() in c for c in cmd):
            pids.append(int(pid))
    return pids


def test_three_participants_share_one_editable_persistent_room(tmp_path, avatar):
    base = _base()
    scene_file = tmp_path / "room.json"
    room_args = ("--scene", str(scene_file), "--node-timeout", "1.5", "--grace", "4")
    room = _room(tmp_path, base, *room_args)
    woman, man = "WolfgangLanger_Pexels.mp4", "single_face.mp4"
    nodes = {}
    started = {}
    director = None
    try:
        for name, clip in (("alice", woman), ("bob", man), ("carol", woman)):
            nodes[name] = _join(tmp_path, base, name, avatar, clip)
            started[name] = time.monotonic()
        director = _client(base, "director", heartbeat_interval_s=0.3)
        assert director.wait_until(lambda s: set(s["slots"]) == {"alice", "bob", "carol"}, 30)
        # A move through the room (the director grabs bob's avatar and puts it elsewhere).
        director.call({"op": "grab", "slot": "bob"})
        director.move("bob", position=(0.9, 1.6, -1.2))
        assert director.wait_until(lambda s: s["slots"]["bob"]["position"] == [0.9, 1.6, -1.2], 2)
        director.call({"op": "release", "slot": "bob"})
        time.sleep(12)            # every render node rebuilt for three slots and shows the streams live
        # kill -9 of a participant: its capture node goes with it, its slot goes away, then is freed.
        alice_captures = _captures_of("alice", base)
        assert alice_captures, "alice's capture node is not running"
        nodes["alice"].kill()
        t_kill = time.monotonic()
        gone_after: list[float] = []   # when her capture node ended, watched from the kill on

        def watch_capture() -> None:
            while _captures_of("alice", base) and time.monotonic() < t_kill + 40:
                time.sleep(0.05)
            gone_after.append(time.monotonic() - t_kill)

        watcher = threading.Thread(target=watch_capture, daemon=True)
        watcher.start()
        assert director.wait_until(lambda s: s["slots"].get("alice", {}).get("away"), 6)
        t_away = time.monotonic()
        assert director.wait_until(lambda s: "alice" not in s["slots"], 10)
        # Freed only after the node timeout (1.5 s) and then the grace (4 s): timed from the kill
        # (her last heartbeat at most a second before it), since the director may see the "away"
        # delta late on a loaded host (once 1.6 s before the "freed" one).
        assert time.monotonic() - t_kill > 1.5 + 4.0 - 1.0
        # Its capture node got SIGTERM when alice died (PR_SET_PDEATHSIG) and ends its stream
        # cleanly; on a loaded host that clean end (the frame in hand, the end-of-stream frame, the
        # clock thread, MediaPipe, the interpreter) outlasted 5 s after the slot was freed, so the
        # bound is generous and the time it took is printed.
        watcher.join(40)
        print(f"alice's capture node ended {gone_after[0]:.2f} s after she was killed "
              f"(slot away after {t_away - t_kill:.1f} s)")
        assert not _captures_of("alice", base), "alice's capture node outlived its participant by 40 s"
        nodes["alice"] = _join(tmp_path, base, "alice", avatar, woman)   # rejoins, leaves last
        started["alice"] = time.monotonic()
        assert director.wait_until(lambda s: "alice" in s["slots"] and not s["slots"]["alice"]["away"], 20)
        time.sleep(6)
        # kill -9 of the room: render nodes keep rendering; the restarted room resynchronises them.
        epoch = director.version()[0]
        room.kill()
        time.sleep(5)
        room = _room(tmp_path, base, *room_args)
        assert director.wait_until(lambda s: s["epoch"] != epoch and set(s["slots"]) == {"alice", "bob", "carol"}
                                   and not any(v["away"] for v in s["slots"].values()), 30), \
            (epoch, director.scene(), director.counters, room.lines[-20:])
        assert director.scene()["slots"]["bob"]["position"] == [0.9, 1.6, -1.2]
        time.sleep(4)             # the resynchronised nodes draw (and map clocks) a while before the end
        stats, ran = {}, {}
        for name in ("bob", "carol", "alice"):
            ran[name] = time.monotonic() - started[name]
            stats[name] = nodes[name].terminate(120)
            time.sleep(2)         # the others see the slot removed before the next one ends
    finally:
        if director is not None:
            director.close()
        for node in nodes.values():
            node.kill()
        room.kill()
    for name, s in stats.items():
        print(name, s["frames_total"], s["sessions"], s["streams"], s["room"]["client"], s["clock_service"])
        others = {"alice", "bob", "carol"} - {name}
        assert set(s["streams"]) == others, (name, s["streams"])
        for other in others:
            st = s["streams"][other]
            assert st["live_frames"] > 20, (name, other, st)      # drawn in its slot, fully live
            assert st["distinct_states"] > 50, (name, other, st)   # the expression changes frame to frame
        # Capture clocks map through the room's clock onto this host's (one host here: offset ≈ 0).
        mapped = s["clock_service"]["capture_to_here"]
        # Bob ended first, while everyone was there; carol saw alice to the end; alice left last, alone.
        expected = {"bob": {"alice", "carol"}, "carol": {"alice"}, "alice": set()}[name]
        assert set(mapped) >= expected, (name, s["clock_service"])
        leg = s["clock_service"]["render_to_room"]
        assert abs(leg["offset_ns"]) < leg["uncertainty_ns"] + 1e6, s["clock_service"]   # this node → room
        # Capture → here chains the capture node's own report (its estimator's drift fit; one run in
        # five here was 20 ms off under load, see the issue report): the median stays near 0.
        import statistics

        assert not mapped or abs(statistics.median(m["offset_ms"] for m in mapped.values())) < 2.5, \
            s["clock_service"]
        assert s["latency"]["unmapped_clock_frames"] < 0.5 * s["frames"], s["latency"]
        assert s["room"]["client"]["resyncs"] >= 1 and s["room"]["client"]["room_lost"] >= 1, (name, s["room"])
        # Rendering went on while the room was down: frames at the paced rate all along (the run
        # measured from "joined room" to SIGTERM; 0.6 leaves room for the first frames' start-up).
        assert s["frames_total"] > 0.6 * 15 * ran[name], (name, s["frames_total"], ran[name])
    for name in ("alice", "carol"):
        assert stats[name]["streams"]["bob"]["position"] == [0.9, 1.6, -1.2]
    # Bob left first (cleanly: his slot was removed), so the others stopped drawing him; alice left last.
    assert not stats["alice"]["streams"]["bob"]["visible"] and not stats["carol"]["streams"]["bob"]["visible"]
    for name in ("bob", "carol"):
        alice = stats[name]["receiver"]["streams"]["alice"]
        assert alice["lost_events"] >= 1 and alice["received"] > 0, alice   # faded when killed, resumed
    assert not _captures_of("bob", base) and not _captures_of("carol", base)   # nothing left behind
