"""`headcast room serve` as a real process, driven by real room clients over loopback sockets:
one owner for simultaneous grabs, moves seen by others within 200 ms, late joiners, identity bound
to CURVE keys, packages verified by sha256, a vanished participant's grace period, and a room
killed with -9 and restarted without losing a placement."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from _processes import Node, free_port

from room.client import RoomClient, RoomClientConfig, RoomRequestError
from room.endpoints import RoomEndpoints
from room.package_store import PackageStoreError, install_package, pack_package, package_sha256
from streaming.sockets import CurveClient, generate_keys


@pytest.fixture(scope="module")
def package():
    from tools.cmd_avatar import ensure_default_avatar

    path = ensure_default_avatar(quick=True, log=lambda *_: None)
    data = pack_package(path)
    return path, data, package_sha256(data)


def _base() -> str:
    for _ in range(20):
        port = free_port(pair=False)
        if all(free_port_ok(port + i) for i in range(5)):
            return f"tcp://127.0.0.1:{port}"
    raise RuntimeError("no five free ports")


def free_port_ok(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def _room(tmp_path, base, *extra, json_name="room_stats.json") -> Node:
    return Node(["room", "serve", "--bind", base, *extra], json_path=tmp_path / json_name, ready="room listening on")


def _client(base, name, curve=None, **kw) -> RoomClient:
    client = RoomClient(RoomClientConfig(RoomEndpoints.from_base(base), name, curve, **kw)).start()
    return client


def _join(base, name, package, curve=None) -> RoomClient:
    _, data, sha = package
    c = _client(base, name, curve)
    assert c.wait_synced(10)
    if not c.call({"op": "has", "sha256": sha})[0]["has"]:
        c.call({"op": "upload", "sha256": sha}, data, timeout_s=30)
    c.call({"op": "register", "stream": name, "package_sha256": sha})
    return c


def test_simultaneous_grabs_one_owner_moves_within_200ms_and_late_joiners(tmp_path, package):
    base = _base()
    room = _room(tmp_path, base, "--scene", str(tmp_path / "room.json"))
    clients = []
    try:
        clients = [_join(base, n, package) for n in ("alice", "bob", "carol", "dave")]
        # Three participants grab alice's avatar at the same instant: exactly one gets it.
        barrier, results = threading.Barrier(3), {}

        def grab(c):
            barrier.wait()
            try:
                c.call({"op": "grab", "slot": "alice"})
                results[c.config.name] = "ok"
            except RoomRequestError as exc:
                results[c.config.name] = exc.reason
        threads = [threading.Thread(target=grab, args=(c,)) for c in clients[1:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results.values()) == ["held", "held", "ok"], results
        holder = next(c for c in clients if results.get(c.config.name) == "ok")
        watchers = [c for c in clients if c is not holder]
        assert all(w.wait_until(lambda s: s["slots"]["alice"]["held_by"] == holder.config.name, 2) for w in watchers)
        # Moves by the holder reach every other participant within 200 ms.
        delays = []
        for i in range(15):
            x = round(0.1 * (i + 1), 3)
            t0 = time.monotonic()
            holder.move("alice", position=(x, 1.6, -2.0))
            for w in watchers:
                assert w.wait_until(lambda s, x=x: s["slots"]["alice"]["position"][0] == x, 2.0)
                delays.append(time.monotonic() - t0)
            time.sleep(0.03)
        assert max(delays) < 0.2, f"slowest move took {max(delays) * 1e3:.0f} ms"
        holder.call({"op": "release", "slot": "alice"})
        # A late joiner's snapshot has the current placement.
        late = _client(base, "erin")
        assert late.wait_synced(5)
        snap = late.scene()
        assert snap["slots"]["alice"]["position"] == [1.5, 1.6, -2.0] and snap["slots"]["alice"]["held_by"] is None
        assert set(snap["slots"]) == {"alice", "bob", "carol", "dave"}
        late.close()
        # Moving without holding the slot is refused.
        with pytest.raises(RoomRequestError) as refused:
            clients[2].call({"op": "move", "slot": "alice", "position": [0, 0, 0]})
        assert refused.value.reason == "not_holder"
    finally:
        for c in clients:
            c.close()
        stats = room.terminate()
    assert stats["refused_by_reason"]["held"] == 2 and stats["requests"]["malformed"] == 0
    print(f"move → seen by others: max {max(delays) * 1e3:.1f} ms over {len(delays)}")


def test_identity_is_the_curve_key_and_strangers_get_nothing(tmp_path, package):
    keys = tmp_path / "keys"
    generate_keys(keys, ["server"])
    generate_keys(keys / "allowed", ["alice", "bob"])
    generate_keys(keys / "strangers", ["mallory"])
    base = _base()
    room = _room(tmp_path, base, "--server-key", str(keys / "server.key_secret"), "--allow", str(keys / "allowed"),
                 "--scene", str(tmp_path / "room.json"))
    key = lambda where, n: CurveClient(keys / where / f"{n}.key_secret", keys / "server.key")
    alice = bob = posing = mallory = None
    try:
        alice = _join(base, "alice", package, key("allowed", "alice"))
        bob = _join(base, "bob", package, key("allowed", "bob"))
        # Bob's key speaking as alice: refused, and alice's slot is untouched.
        posing = _client(base, "alice", key("allowed", "bob"))
        assert not posing.wait_synced(1.5)
        with pytest.raises(RoomRequestError) as refused:
            posing.call({"op": "remove", "slot": "alice"}, timeout_s=2)
        assert refused.value.reason == "identity"
        # A key not on the allow-list: no snapshot, no deltas, no answer at all.
        mallory = _client(base, "mallory", key("strangers", "mallory"))
        assert not mallory.wait_synced(1.5)
        with pytest.raises(RoomRequestError) as silent:
            mallory.call({"op": "grab", "slot": "alice"}, timeout_s=1)
        assert silent.value.reason == "timeout"
        assert mallory.counters["deltas"] == 0 and not mallory.room_alive
        bob.call({"op": "grab", "slot": "alice"})
        assert alice.wait_until(lambda s: s["slots"]["alice"]["held_by"] == "bob", 2)
    finally:
        for c in (alice, bob, posing, mallory):
            if c is not None:
                c.close()
        stats = room.terminate()
    assert stats["requests"]["identity_refused"] >= 1 and stats["slots"] == 2


def test_packages_are_verified_limited_and_fetched_by_sha256(tmp_path, package):
    path, data, sha = package
    base = _base()
    room = _room(tmp_path, base, "--scene", str(tmp_path / "room.json"), "--max-package-mb", "8")
    c = _client(base, "alice")
    try:
        assert c.wait_synced(10)
        with pytest.raises(RoomRequestError, match="unknown|upload"):       # nothing registered unverified
            c.call({"op": "register", "stream": "alice", "package_sha256": sha})
        with pytest.raises(RoomRequestError, match="hash"):
            c.call({"op": "upload", "sha256": "0" * 64}, data)
        tampered = bytearray(data)
        tampered[-100] ^= 0xFF
        with pytest.raises(RoomRequestError, match="manifest|sha256|valid"):
            c.call({"op": "upload", "sha256": package_sha256(bytes(tampered))}, bytes(tampered), timeout_s=30)
        c.call({"op": "upload", "sha256": sha}, data, timeout_s=30)
        c.call({"op": "register", "stream": "alice", "package_sha256": sha})
        _, fetched = c.call({"op": "fetch", "sha256": sha}, timeout_s=30)
        installed = install_package(fetched, sha, tmp_path / "cache")
        assert installed == tmp_path / "cache" / sha and (installed / "avatar.json").read_bytes() == \
            (Path(path) / "avatar.json").read_bytes()
        with pytest.raises(PackageStoreError):
            install_package(bytes(tampered), sha, tmp_path / "cache2")
        assert not (tmp_path / "cache2" / sha).exists()
    finally:
        c.close()
        stats = room.terminate()
    assert stats["requests"]["uploads"] == 1 and stats["packages_refused"] >= 1
    # A room with a smaller limit refuses the package outright.
    base = _base()
    small = _room(tmp_path, base, "--scene", str(tmp_path / "small.json"), "--max-package-mb", "1",
                  json_name="small.json.stats")
    c = _client(base, "alice")
    try:
        assert c.wait_synced(10)
        with pytest.raises(RoomRequestError):
            c.call({"op": "upload", "sha256": sha}, data, timeout_s=10)
    finally:
        c.close()
        small.terminate()


def test_a_vanished_participant_keeps_its_slot_for_the_grace_period_and_resumes(tmp_path, package):
    base = _base()
    room = _room(tmp_path, base, "--scene", str(tmp_path / "room.json"), "--node-timeout", "1", "--grace", "3")
    bob = alice = None
    try:
        alice = _join(base, "alice", package, None)
        bob = _join(base, "bob", package, None)
        bob.call({"op": "grab", "slot": "alice"})
        bob.move("alice", position=(0.7, 1.5, -2.5))
        assert alice.wait_until(lambda s: s["slots"]["alice"]["position"] == [0.7, 1.5, -2.5], 2)
        bob.call({"op": "release", "slot": "alice"})
        alice.close()                         # gone without leaving: heartbeats stop
        assert bob.wait_until(lambda s: s["slots"]["alice"]["away"], 4)
        alice = _join(base, "alice", package, None)   # back within the grace period: same place
        assert bob.wait_until(lambda s: not s["slots"]["alice"]["away"], 3)
        assert bob.scene()["slots"]["alice"]["position"] == [0.7, 1.5, -2.5]
        alice.close()
        t0 = time.monotonic()
        assert bob.wait_until(lambda s: "alice" not in s["slots"], 8)
        assert time.monotonic() - t0 > 2.5     # not before the grace period ran out
    finally:
        for c in (alice, bob):
            if c is not None:
                c.close()
        room.terminate()


def test_room_killed_and_restarted_resynchronises_every_node_without_losing_a_placement(tmp_path, package):
    base = _base()
    scene_file = tmp_path / "room.json"
    room = _room(tmp_path, base, "--scene", str(scene_file))
    alice = bob = None
    try:
        alice = _join(base, "alice", package)
        bob = _join(base, "bob", package)
        alice.call({"op": "grab", "slot": "bob"})
        alice.move("bob", position=(-0.8, 1.4, -1.8), rotation=(0.0, 0.0, 1.0, 0.0))
        assert bob.wait_until(lambda s: s["slots"]["bob"]["position"] == [-0.8, 1.4, -1.8], 2)
        alice.call({"op": "release", "slot": "bob"})
        before = {k: (v["position"], v["rotation"]) for k, v in bob.scene()["slots"].items()}
        epoch = bob.version()[0]
        room.kill()                                                 # SIGKILL
        assert bob.wait_until(lambda s: False, 3.5) is False and not bob.room_alive
        assert bob.scene()["slots"]["bob"]["position"] == [-0.8, 1.4, -1.8]   # the copy stays
        room = _room(tmp_path, base, "--scene", str(scene_file))
        for c in (alice, bob):
            assert c.wait_until(lambda s: s["epoch"] != epoch and not any(v["away"] for v in s["slots"].values()), 10)
            after = {k: (v["position"], v["rotation"]) for k, v in c.scene()["slots"].items()}
            assert after == before
            assert c.counters["resyncs"] >= 1 and c.room_alive
        # The restarted room is fully working: edits apply and reach everyone.
        bob.call({"op": "grab", "slot": "alice"})
        bob.move("alice", position=(0.3, 1.6, -1.0))
        assert alice.wait_until(lambda s: s["slots"]["alice"]["position"] == [0.3, 1.6, -1.0], 2)
    finally:
        for c in (alice, bob):
            if c is not None:
                c.close()
        room.terminate()


def test_hostile_control_messages_are_counted_and_the_room_keeps_answering(tmp_path, package):
    import zmq

    from streaming.sockets import SocketOptions, open_socket

    base = _base()
    room = _room(tmp_path, base, "--scene", str(tmp_path / "room.json"))
    raw = open_socket(zmq.DEALER, RoomEndpoints.from_base(base).control, bind=False,
                      options=SocketOptions(linger_ms=0))
    alice = None
    try:
        for junk in ([b"\xff\xfe not json"], [b"[" * 5000 + b"]" * 5000], [b'{"op": "move", "x": NaN}'],
                     [b'"just a string"'], [b"{}", b"x", b"y", b"z"], [b"x" * (1 << 17)],
                     [b'{"op": "register", "name": "alice", "stream": "../../etc", "package_sha256": "00"}']):
            raw.sock.send_multipart(junk)
        alice = _join(base, "alice", package)          # still answering, scene intact
        assert set(alice.scene()["slots"]) == {"alice"}
    finally:
        raw.close()
        if alice is not None:
            alice.close()
        stats = room.terminate()
    assert stats["requests"]["malformed"] >= 6 and stats["requests"]["refused"] >= 1
    assert alice.counters["room_lost"] == 0      # the room's beat never paused (upload validated off the loop)
