"""Capture node end to end: real sample videos → MediaPipe → features → real ZeroMQ → Receiver."""
from __future__ import annotations

import json
import socket
import time

import numpy as np
import pytest
import zmq.auth

from capture.node import CaptureConfig, CaptureNode
from capture.sources import SourceConfig
from geometry.rotations import quaternion_to_rotation
from streaming.protocol import FeatureKind, Flags
from streaming.sockets import CurveServer
from tools import cli
from tools.samples import sample_path
from streaming.receiver import Receiver, ReceiverConfig

WOMAN, MAN = "WolfgangLanger_Pexels.mp4", "single_face.mp4"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ended(stream: str):
    return lambda r: stream in r.snapshot() and r.snapshot()[stream].end_of_stream


def _check_face_frames(frames, n_expected: int):
    assert [f.seq for f in frames] == list(range(n_expected + 1))  # + end of stream
    data, eos = frames[:-1], frames[-1]
    assert eos.flags == Flags.END_OF_STREAM and eos.kind is FeatureKind.NONE
    for f in data:
        assert not f.face_lost and f.confidence == 1.0
        assert f.kind is FeatureKind.MP478 and f.features.shape == (478, 3)
        assert np.isfinite(f.features).all()
        assert f.t_capture_ns <= f.t_features_ns <= f.t_send_ns
        r = quaternion_to_rotation(f.pose.rotation)
        frontal = np.diag([1.0, -1.0, -1.0])  # canonical y up / z out vs. OpenCV y down / z in
        assert np.degrees(np.arccos(np.clip((np.trace(frontal.T @ r) - 1) / 2, -1, 1))) < 35
        assert 30 < f.pose.scale < 200 and 0 < f.pose.translation[0] < 640 and 0 < f.pose.translation[1] < 360
    return data


def test_man_clip_streams_every_frame_with_online_neutral():
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=128)) as rx:
        node = CaptureNode(CaptureConfig(SourceConfig(str(sample_path(MAN))), rx.bound_endpoint, "man"))
        stats = node.run()
        assert rx.wait_for(_ended("man"), 5)
        st = rx.snapshot()["man"]
        frames = rx.window("man", 128)
    assert (stats.frames, stats.face_frames, stats.face_lost, stats.sent) == (72, 72, 0, 73)
    assert st.received == 73 and st.dropped == 0 and st.stale == 0 and rx.counters.malformed == 0
    data = _check_face_frames(frames, 72)
    # no neutral file: flagged as estimated, CALIBRATING only at the start, then settled
    assert all(f.flags & Flags.NEUTRAL_ESTIMATED for f in data)
    calibrating = [bool(f.flags & Flags.CALIBRATING) for f in data]
    assert calibrating[0] and not calibrating[-1]
    assert calibrating == sorted(calibrating, reverse=True)  # one block at the start
    assert sum(calibrating) <= 40
    # the estimated neutral is his calm start: calm frames small, smile frames large
    rms = [float(np.sqrt((f.features ** 2).sum(-1).mean())) for f in data]
    assert np.median(rms[5:20]) < 0.35 * np.median(rms[30:66])
    for stage in ("decode", "landmarks", "features", "send"):
        assert len(stats.stage_ms[stage]) == 72


def test_woman_clip_via_cli_with_neutral_file(tmp_path, capsys):
    neutral = tmp_path / "woman_neutral.npz"
    # her calmest moment is frames ~228-246 (9.5 s into the clip)
    assert cli.main(["calibrate", "neutral", "--source", str(sample_path(WOMAN)), "--out", str(neutral),
                     "--start", "9.5", "--seconds", "0.8"]) == 0
    assert neutral.is_file()
    capsys.readouterr()
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=128)) as rx:
        rc = cli.main(["capture", "--source", str(sample_path(WOMAN)), "--connect", rx.bound_endpoint,
                       "--stream", "woman", "--frames", "60", "--neutral", str(neutral), "--stats",
                       "--stats-json", str(tmp_path / "stats.json")])
        assert rc == 0
        assert rx.wait_for(_ended("woman"), 5)
        frames = rx.window("woman", 128)
    out = capsys.readouterr().out
    for label in ("decode", "landmarks", "features", "encode+send", "capture→sent", "fps"):
        assert label in out
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["frames"] == 60 and stats["face_frames"] == 60 and stats["sent"] == 61
    assert stats["stages_ms"]["landmarks"]["p50"] > 0 and stats["capture_to_sent_ms"]["p95"] > 0
    data = _check_face_frames(frames, 60)
    assert all(f.flags == Flags.NONE for f in data)  # neutral from a file: not calibrating, not estimated
    # she cries with closed eyes in frames 20-50: the lids are together in the features
    gap = [(f.features[159, 1] - f.features[145, 1]) + (f.features[386, 1] - f.features[374, 1]) for f in data]
    assert np.median(gap[20:50]) < -0.3


def test_realtime_paces_at_the_clip_rate():
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        node = CaptureNode(CaptureConfig(SourceConfig(str(sample_path(MAN)), realtime=True, max_frames=15),
                                         rx.bound_endpoint, "paced"))
        stats = node.run()
        assert rx.wait_for(_ended("paced"), 5)
        frames = rx.window("paced", 64)[:-1]
    # 15 frames at 30 fps: 14 intervals; slack above for a slow first MediaPipe call on a busy machine
    assert 14 / 30 - 0.02 < stats.wall_s < 14 / 30 + 0.3
    gaps_ms = np.diff([f.t_capture_ns for f in frames]) / 1e6
    assert np.median(gaps_ms) == pytest.approx(1000 / 30, abs=4)


def test_capture_binds_and_receiver_connects():
    port = _free_port()
    with Receiver(ReceiverConfig(endpoint=f"tcp://127.0.0.1:{port}", bind=False, history=64)) as rx:
        assert cli.main(["capture", "--source", str(sample_path(MAN)), "--bind", f"tcp://127.0.0.1:{port}",
                         "--stream", "bound", "--frames", "10"]) == 0
        assert rx.wait_for(_ended("bound"), 5)
        assert rx.snapshot()["bound"].received == 11


def test_binding_a_public_address_without_curve_is_refused(capsys):
    rc = cli.main(["capture", "--source", str(sample_path(MAN)), "--bind", "tcp://0.0.0.0:5999",
                   "--stream", "x", "--frames", "1"])
    assert rc == 2
    assert "--insecure" in capsys.readouterr().err


def test_curve_keys_from_files(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    keys.mkdir()
    allowed.mkdir()
    zmq.auth.create_certificates(str(keys), "server")
    zmq.auth.create_certificates(str(allowed), "driver")
    zmq.auth.create_certificates(str(keys), "stranger")
    curve = CurveServer(keys / "server.key_secret", allowed)
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64, curve_server=curve)) as rx:
        ep = rx.bound_endpoint
        assert cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", ep, "--stream", "stranger",
                         "--frames", "3", "--server-key", str(keys / "server.key"),
                         "--client-key", str(keys / "stranger.key_secret")]) == 0
        assert cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", ep, "--stream", "driver",
                         "--frames", "5", "--server-key", str(keys / "server.key"),
                         "--client-key", str(allowed / "driver.key_secret")]) == 0
        assert rx.wait_for(_ended("driver"), 5)
        time.sleep(0.1)
        snap = rx.snapshot()
    assert snap["driver"].received == 6
    assert "stranger" not in snap  # unknown client key: nothing got through


def test_loop_and_frame_limit_on_a_file_source():
    from capture.sources import open_source

    with open_source(SourceConfig(str(sample_path(MAN)), loop=True, max_frames=100)) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(100))  # 72 + 28 of the second pass
    np.testing.assert_array_equal(frames[72].image, frames[0].image)
    assert all(frames[i].t_capture_ns < frames[i + 1].t_capture_ns for i in range(99))


def test_bench_capture_command_writes_its_json(tmp_path, capsys):
    """A smoke run of the benchmark command (its numbers are reported, not asserted)."""
    out = tmp_path / "bench.json"
    assert cli.main(["bench", "capture", "--source", str(sample_path(MAN)), "--json", str(out), "--frames", "20"]) == 0
    res = json.loads(out.read_text())
    assert res["frames"] == 20 and res["face_frames"] == 20 and res["received"] == 21
    assert set(res["stages_ms"]) == {"decode", "landmarks", "features", "send"}
    assert res["fps"] > 0 and "machine" in res and "meets_targets" in res
    assert "capture→sent" in capsys.readouterr().out
