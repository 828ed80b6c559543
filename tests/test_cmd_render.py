"""`headcast render` and `headcast bench render` as a user runs them: real sockets, real EGL."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xr_runtime.gl.egl_context")

from streaming.protocol import FeatureFrame, FeatureKind, Flags  # noqa: E402
from streaming.publisher import Publisher  # noqa: E402

HEADCAST = [sys.executable, "-m", "tools.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scene(tmp_path: Path) -> Path:
    path = tmp_path / "scene.json"
    path.write_text(json.dumps({"version": 1, "avatars": [
        {"package": "a", "stream": "alice", "position": [-0.12, 1.6, -0.6]},
        {"package": "b", "stream": "bob", "position": [0.12, 1.6, -0.6]}]}))
    return path


def test_render_headless_follows_a_live_stream_then_fades_when_the_face_is_lost(tmp_path):
    port = _free_port()
    stats_path, out = tmp_path / "stats.json", tmp_path / "frames"
    render = subprocess.Popen(HEADCAST + ["render", "--scene", str(_scene(tmp_path)), "--dev-avatars",
                                          "--bind", f"tcp://127.0.0.1:{port}", "--backend", "auto",
                                          "--seconds", "4", "--fps", "20", "--size", "160x120",
                                          "--out", str(out), "--json", str(stats_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert render.stdout.readline().startswith("backend: headless")
        assert "listening" in render.stdout.readline()
        with Publisher(f"tcp://127.0.0.1:{port}") as pub:
            t0 = time.monotonic()
            seq = 0
            while time.monotonic() - t0 < 3.8:
                lost = time.monotonic() - t0 > 2.2  # the face disappears for the last 1.6 s
                t = time.monotonic_ns()
                pub.send(FeatureFrame("alice", seq, FeatureKind.MP478, np.zeros((478, 3), np.float16), t, t,
                                      flags=Flags.FACE_LOST if lost else Flags.NONE))
                seq += 1
                time.sleep(1 / 30)
        stdout, stderr = render.communicate(timeout=30)
    finally:
        render.kill()
    assert render.returncode == 0, stderr
    stats = json.loads(stats_path.read_text())
    assert stats["backend"] == "headless" and stats["receiver"]["messages"] > 60
    assert 60 <= stats["frames"] <= 85                     # paced at 20 Hz for 4 s
    alice, bob = stats["streams"]["alice"], stats["streams"]["bob"]
    assert alice["live_frames"] > 10                       # live while the face was tracked
    assert alice["state"] == "idle"                        # faded after the face was lost
    assert bob["live_frames"] == 0 and bob["state"] == "idle"  # nobody drives bob
    assert len(list(out.glob("frame_*.png"))) == stats["frames"]


def test_render_refuses_bad_arguments_with_a_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"version": 1, "avatars": [{"package": "a"}]}')
    r = subprocess.run(HEADCAST + ["render", "--scene", str(bad), "--backend", "headless", "--frames", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "scene invalid" in r.stderr
    r = subprocess.run(HEADCAST + ["render", "--avatar", str(tmp_path), "--save-placements", "--frames", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--save-placements needs --scene" in r.stderr
    r = subprocess.run(HEADCAST + ["render", "--avatar", str(tmp_path / "missing"), "--backend", "headless",
                                   "--frames", "1"], capture_output=True, text=True)
    assert r.returncode == 2 and "missing" in r.stderr
    r = subprocess.run(HEADCAST + ["render", "--scene", str(_scene(tmp_path)), "--dev-avatars", "--bind",
                                   "tcp://0.0.0.0:5598", "--backend", "headless", "--frames", "1"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "--insecure" in r.stderr


def test_bench_render_writes_ratios_against_the_empty_scene(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(HEADCAST + ["bench", "render", "--json", str(out), "--avatars", "1,2", "--frames", "5",
                                   "--size", "96x64", "--texture", "64"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "frame/empty" in r.stdout
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"0", "1", "2"}
    assert data["ratios_vs_empty_p50"]["0"]["frame"] == pytest.approx(1.0)
    for count in ("1", "2"):
        res = data["results"][count]
        assert res["frame"]["n"] == 5 and res["uploads"]["host"] == 15 * int(count)  # a new texture every frame
    assert data["results"]["2"]["draw_eye0"]["p50"] > 0
    # Side by side in the same run: opaque avatars (one pass) as well as soft-edged ones.
    assert data["alpha"] == "both" and set(data["results_opaque"]) == {"0", "1", "2"}
    assert data["results_opaque"]["2"]["frame"]["n"] == 5 and "with the soft pass" in r.stdout


def test_bench_render_measures_a_torso_side_by_side(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run(HEADCAST + ["bench", "render", "--json", str(out), "--avatars", "1", "--frames", "5",
                                   "--size", "96x64", "--texture", "64", "--alpha", "soft", "--torso", "both"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"0", "1"} and set(data["results_torso"]) == {"1"}
    assert data["results_torso"]["1"]["frame"]["n"] == 5 and "with a torso" in r.stdout


def test_render_with_the_streaming_engine_animates_the_live_driven_avatar(tmp_path):
    """Socket → receiver → streaming engine (reference avatar: real shapes, untrained weights) →
    texture upload → headless frames: the driven avatar's texture changes while the features do."""
    pytest.importorskip("torch")
    port = _free_port()
    stats_path, out = tmp_path / "stats.json", tmp_path / "frames"
    render = subprocess.Popen(HEADCAST + ["render", "--scene", str(_scene(tmp_path)), "--engine", "reference",
                                          "--bind", f"tcp://127.0.0.1:{port}", "--backend", "headless",
                                          "--seconds", "4", "--fps", "15", "--size", "160x120",
                                          "--out", str(out), "--json", str(stats_path)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert render.stdout.readline().startswith("backend: headless")
        assert "listening" in render.stdout.readline()
        rng = np.random.default_rng(0)
        feats = np.zeros((478, 3), np.float32)
        with Publisher(f"tcp://127.0.0.1:{port}") as pub:
            t0, seq = time.monotonic(), 0
            while render.poll() is None and time.monotonic() - t0 < 30:  # drive it for its whole run
                # Fresh expressions within what the avatar was trained on (a random walk leaves that
                # range within a second, and the engine rightly drops such frames: issue 11).
                feats = rng.normal(0, 0.3, feats.shape).astype(np.float32)
                t = time.monotonic_ns()
                pub.send(FeatureFrame("alice", seq, FeatureKind.MP478, feats.astype(np.float16), t, t))
                seq += 1
                time.sleep(1 / 30)
        stdout, stderr = render.communicate(timeout=60)
    finally:
        render.kill()
    assert render.returncode == 0, stderr
    stats = json.loads(stats_path.read_text())
    alice, bob = stats["streams"]["alice"], stats["streams"]["bob"]
    assert alice["live_frames"] > 10 and bob["live_frames"] == 0
    assert stats["uploads"]["host"] > 15        # new textures from the engine, uploaded as they came
    import cv2

    frames = sorted(out.glob("frame_*.png"))
    # alice stands left of centre: her face region changes from frame to frame while driven.
    crops = [cv2.imread(str(p))[40:80, 30:75].astype(int) for p in frames[-20:-5]]
    changes = [int(np.abs(a - b).max()) for a, b in zip(crops, crops[1:])]
    assert sum(c > 8 for c in changes) >= 5, changes


def test_render_a_real_avatar_package_shows_its_face(tmp_path_factory, tmp_path):
    """The package path: mesh, UVs and the decoder's neutral face from a real `--quick` build."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _avatar_quick import quick_build

    package = quick_build(tmp_path_factory.getbasetemp())
    out, stats_path = tmp_path / "frames", tmp_path / "stats.json"
    r = subprocess.run(HEADCAST + ["render", "--avatar", str(package), "--stream", "cam", "--bind", "tcp://127.0.0.1:*",
                                   "--backend", "headless", "--frames", "3", "--size", "200x150", "--out", str(out),
                                   "--json", str(stats_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    import cv2

    image = cv2.imread(str(out / "frame_00002.png"))[..., ::-1].astype(int)
    face = image[70:80, 95:105].reshape(-1, 3).mean(axis=0)     # the face at 1 m, straight ahead
    wall = image[75, 20]
    assert np.abs(face - wall).max() > 25, (face, wall)           # not the wall behind
    assert face[0] > face[2]                                      # skin: more red than blue
    stats = json.loads(stats_path.read_text())
    assert stats["uploads"]["host"] == 1 and stats["streams"]["cam"]["state"] == "idle"
