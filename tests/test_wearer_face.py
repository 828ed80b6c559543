"""The wearer's face (headset face tracking) as a participant's stream in a CURVE room: real room
process, real CURVE sockets, the real publisher and clock client. No headset here (Monado offers no
face-tracking extension, tests/test_face_tracking.py), so the frames are the session's FrameInfo
records with a face payload, exactly what OpenXRSession hands WearerFaceStream each frame."""
from __future__ import annotations

import time

import numpy as np
import pytest
from _processes import assert_no_traceback, run_headcast
from test_room_service import _base, _join, _room, package  # noqa: F401  (the module's package fixture)

from inference.features.expr52_names import INDEX
from room.endpoints import RoomEndpoints
from streaming.protocol import FeatureKind
from streaming.receiver import Receiver, ReceiverConfig
from streaming.sockets import CurveClient, generate_keys
from xr_runtime.openxr.face_tracking import WearerFaceStream, WearerFaceTarget
from xr_runtime.openxr.session import FrameInfo


def _face(jaw: float) -> np.ndarray:
    face = np.zeros((52, 2), np.float32)
    face[:, 1] = 0.9
    face[INDEX["jawOpen"], 0] = jaw
    return face


def _frame(i: int, jaw: float) -> FrameInfo:
    return FrameInfo(index=i, predicted_display_time=0, predicted_display_period_ns=11_111_111,
                     display_time_monotonic_ns=time.monotonic_ns(), should_render=True, face=_face(jaw))


def test_wearer_face_reaches_a_curve_room_under_its_own_key_only(tmp_path, package):  # noqa: F811
    keys = tmp_path / "keys"
    generate_keys(keys, ["server"])
    generate_keys(keys / "allowed", ["alice", "bob"])
    key = lambda n: CurveClient(keys / "allowed" / f"{n}.key_secret", keys / "server.key")  # noqa: E731
    base = _base()
    ep = RoomEndpoints.from_base(base)
    room = _room(tmp_path, base, "--server-key", str(keys / "server.key_secret"), "--allow", str(keys / "allowed"),
                 "--scene", str(tmp_path / "room.json"))
    alice = bob = wearer = posing = None
    try:
        alice, bob = _join(base, "alice", package, key("alice")), _join(base, "bob", package, key("bob"))
        wearer = WearerFaceStream(WearerFaceTarget(ep.streams_in, "alice", key("alice"), ep.clock))
        with Receiver(ReceiverConfig(endpoint=ep.streams_out, bind=False, curve_client=key("bob"),
                                     subscribe=("alice",))) as rx:
            # The slow joiner: keep sending until the relay's subscription reaches the publisher.
            i, deadline = 0, time.monotonic() + 20
            while rx.latest("alice") is None and time.monotonic() < deadline:
                wearer.on_frame(_frame(i, 0.1))
                i += 1
                time.sleep(0.02)
            assert rx.latest("alice") is not None, "no frame of the wearer's face came through the room"
            for j in range(20):
                wearer.on_frame(_frame(i + j, 0.05 * j))
                time.sleep(0.01)
            assert rx.wait_for(lambda r: r.latest("alice").seq == i + 19, 5)
            last = rx.latest("alice")
            assert last.kind == FeatureKind.EXPR52
            np.testing.assert_allclose(last.features, _face(0.95), atol=1e-6)
            # Bob's key publishing as alice: the relay forwards nothing of it.
            posing = WearerFaceStream(WearerFaceTarget(ep.streams_in, "alice", key("bob")))
            seq_before = rx.latest("alice").seq
            for j in range(30):
                posing.on_frame(_frame(10_000 + j, 1.0))
                time.sleep(0.01)
            time.sleep(0.3)
            assert rx.latest("alice").seq == seq_before and rx.counters.accepted >= 21
        # The wearer's clock reached the room under the stream's id, so other nodes map its times.
        assert bob.wait_until(lambda _s: "alice" in bob.clocks, 10), bob.clocks
    finally:
        for c in (wearer, posing):
            if c is not None:
                c.close()
        for c in (alice, bob):
            if c is not None:
                c.close()
        stats = room.terminate()
    assert stats["relay"]["spoofed"] >= 1 and stats["relay"]["forwarded"] >= 21, stats["relay"]


def test_headset_face_without_openxr_is_a_clear_error(tmp_path, package):  # noqa: F811
    avatar = str(package[0])
    r = run_headcast(["join", "--name", "alice", "--avatar", str(tmp_path), "--headset-face", "--backend", "headless"])
    assert r.returncode == 2 and "--headset-face needs the openxr backend" in r.stderr
    assert_no_traceback(r.stderr)
    r = run_headcast(["render", "--avatar", avatar, "--backend", "headless", "--frames", "1", "--face-client-key", str(tmp_path / "k")])
    assert r.returncode == 2 and "go with --face-stream" in r.stderr
    assert_no_traceback(r.stderr)
    r = run_headcast(["render", "--avatar", avatar, "--backend", "headless", "--frames", "1", "--face-stream", "wearer"])
    assert r.returncode == 2 and "needs the openxr backend, not headless" in r.stderr
    assert_no_traceback(r.stderr)


@pytest.mark.parametrize("missing", ["--face-server-key", "--face-client-key"])
def test_face_keys_go_together(tmp_path, package, missing):  # noqa: F811
    other = "--face-client-key" if missing == "--face-server-key" else "--face-server-key"
    (tmp_path / "k").write_text("x")
    r = run_headcast(["render", "--avatar", str(package[0]), "--backend", "headless", "--frames", "1",
                      "--face-stream", "wearer", other, str(tmp_path / "k")])
    assert r.returncode == 2 and "go together" in r.stderr
    assert_no_traceback(r.stderr)


@pytest.mark.xr
def test_join_with_the_headset_face_on_monado(tmp_path, package):  # noqa: F811
    """`join --headset-face`: no capture node; the OpenXR session would publish the wearer's face
    as the participant's stream. Monado offers no face tracking, so it joins, says so once, and
    renders the room."""
    import json
    import os

    if os.environ.get("HEADCAST_MONADO_ENV") != "1" and not os.environ.get("XR_RUNTIME_JSON"):
        pytest.skip("needs an OpenXR runtime: run under scripts/monado_env.sh run")
    base = _base()
    room = _room(tmp_path, base, "--scene", str(tmp_path / "room.json"))
    try:
        r = run_headcast(["join", base, "--name", "wearer", "--avatar", str(package[0]), "--headset-face",
                          "--backend", "openxr", "--frames", "20", "--mirror", "--json", str(tmp_path / "join.json")],
                         timeout=180)
    finally:
        stats = room.terminate()
    assert r.returncode == 0, r.stderr[-2000:]
    assert "joined room" in r.stdout and "offers no face tracking" in r.stderr
    assert_no_traceback(r.stderr)
    out = json.loads((tmp_path / "join.json").read_text())
    assert out["capture_exit"] is None and out["frames_total"] >= 20  # no capture node ran
    assert out["backend_info"]["face_tracking"] is None
    # A clean exit leaves the room, and with no tracker nothing was published as the wearer.
    assert stats["slots"] == 0 and stats["relay"]["forwarded"] == 0, stats["relay"]
