"""The `headcast` command itself: every subcommand present, keys, listen, samples."""
from __future__ import annotations

import importlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from streaming.protocol import FeatureFrame, FeatureKind
from streaming.sockets import CurveClient
from streaming.publisher import Publisher
from tools import cli, samples

HEADCAST = [sys.executable, "-m", "tools.cli"]


def test_every_listed_subcommand_exists():
    for name in cli.SUBCOMMANDS:
        importlib.import_module(name)
    from tools import cmd_bench
    for name in cmd_bench.BENCHMARKS:
        importlib.import_module(name)
    help_text = cli.build_parser().format_help()
    for name in ("samples", "keys", "listen", "capture", "replay", "calibrate", "bench", "eval", "demo", "render",
                 "build-avatar", "avatar"):
        assert name in help_text


def test_samples_are_verified_and_path_prints_one_line():
    out = subprocess.run(HEADCAST + ["samples", "--path", "single_face.mp4"], capture_output=True, text=True, check=True)
    path = Path(out.stdout.strip())
    assert path.is_file() and samples.sha256_file(path) == samples.SAMPLES["single_face.mp4"].sha256
    bad = subprocess.run(HEADCAST + ["samples", "--path", "nope.mp4"], capture_output=True, text=True)
    assert bad.returncode == 2 and "unknown sample" in bad.stderr


def test_corrupted_cached_sample_is_refetched(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADCAST_CACHE", str(tmp_path))
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / "no_face.mp4").write_bytes(b"not a video")
    p = samples.sample_path("no_face.mp4")
    assert p.parent == tmp_path / "samples"
    assert samples.sha256_file(p) == samples.SAMPLES["no_face.mp4"].sha256


def test_tampered_wheel_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("HEADCAST_CACHE", str(tmp_path))
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / samples.WHEEL_NAME).write_bytes(b"PK\x03\x04 tampered")
    r = subprocess.run(HEADCAST + ["samples"], capture_output=True, text=True)
    assert r.returncode == 2 and "wrong sha256" in r.stderr


def test_keys_generate_and_listen_with_curve(tmp_path):
    keys = tmp_path / "keys"
    r = subprocess.run(HEADCAST + ["keys", "generate", str(keys), "--client", "cam1"], capture_output=True, text=True, check=True)
    assert "--server-key" in r.stdout
    for f in ("server.key", "server.key_secret", "clients/cam1.key", "clients/cam1.key_secret", "allowed/cam1.key"):
        assert (keys / f).is_file(), f
    again = subprocess.run(HEADCAST + ["keys", "generate", str(keys), "--client", "cam1"], capture_output=True, text=True)
    assert again.returncode == 2 and "not overwriting" in again.stderr

    port = _free_port()
    out = tmp_path / "listen.json"
    listen = subprocess.Popen(HEADCAST + ["listen", "--bind", f"tcp://127.0.0.1:{port}", "--seconds", "4",
                                          "--json", str(out), "--server-key", str(keys / "server.key_secret"),
                                          "--allow", str(keys / "allowed")], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening" in listen.stdout.readline()
        client = CurveClient(keys / "clients" / "cam1.key_secret", keys / "server.key")
        with Publisher(f"tcp://127.0.0.1:{port}", curve_client=client) as pub:
            t_end = time.monotonic() + 2.5
            seq = 0
            while time.monotonic() < t_end:
                t = time.monotonic_ns()
                feats = np.full((478, 3), 0.25, np.float16)
                pub.send(FeatureFrame("cam1", seq, FeatureKind.MP478, feats, t, t))
                seq += 1
                time.sleep(1 / 60)
        listen.wait(15)
    finally:
        listen.kill()
    stats = json.loads(out.read_text())
    s = stats["streams"]["cam1"]
    assert s["received"] > 60 and s["dropped"] == 0 and s["kind"] == "mp478"
    assert s["features"]["values"][:3] == [0.25, 0.25, 0.25]
    assert 0 <= s["capture_to_receive_ms"] < 100


def test_listen_refuses_public_bind_without_curve():
    r = subprocess.run(HEADCAST + ["listen", "--bind", "tcp://0.0.0.0:5599", "--seconds", "0.1"], capture_output=True, text=True)
    assert r.returncode == 2 and "--insecure" in r.stderr


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_capture_cli_into_listen_cli_with_clock_calibration(tmp_path):
    """Two real processes, as on two machines: capture streams the sample clip to listen, and
    pings listen's clock service so capture→receive latency is computed on mapped clocks."""
    port = _free_port()
    out = tmp_path / "listen.json"
    listen = subprocess.Popen(HEADCAST + ["listen", "--bind", f"tcp://127.0.0.1:{port}", "--seconds", "12",
                                          "--json", str(out)], stdout=subprocess.PIPE, text=True)
    try:
        first = listen.stdout.readline()
        assert "clock service on tcp://127.0.0.1:%d" % (port + 1) in first
        clip = samples.sample_path("single_face.mp4")
        cap = subprocess.run(HEADCAST + ["capture", "--source", str(clip), "--connect", f"tcp://127.0.0.1:{port}",
                                         "--stream", "man", "--realtime", "--frames", "60"],
                             capture_output=True, text=True, timeout=60)
        assert cap.returncode == 0, cap.stderr[-2000:]
        listen.wait(30)
    finally:
        listen.kill()
    s = json.loads(out.read_text())["streams"]["man"]
    assert s["received"] == 61 and s["dropped"] == 0 and s["end_of_stream"]  # 60 frames + end of stream
    assert s["clock"] is not None and abs(s["clock"]["offset_ns"]) < 2_000_000  # same host: ~0
