"""`headcast bench latency --attach`: measure a running render node without stopping it."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time

import numpy as np

from streaming.protocol import FeatureFrame, FeatureKind
from streaming.publisher import Publisher

HEADCAST = [sys.executable, "-m", "tools.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_attach_to_a_live_render_node(tmp_path):
    data, lat = free_port(), free_port()
    render = subprocess.Popen(HEADCAST + ["render", "--avatar", str(tmp_path / "unused"), "--stream", "s",
                                          "--engine", "reference", "--backend", "headless", "--seconds", "12",
                                          "--bind", f"tcp://127.0.0.1:{data}", "--latency-bind", f"tcp://127.0.0.1:{lat}",
                                          "--clock-bind", "off", "--size", "160x120"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def drive():
        rng = np.random.default_rng(0)
        with Publisher(f"tcp://127.0.0.1:{data}") as pub:
            seq = 0
            while not done.is_set():
                t = time.monotonic_ns()
                feats = rng.normal(0, 0.3, (478, 3)).astype(np.float16)
                pub.send(FeatureFrame("s", seq, FeatureKind.MP478, feats, t, t + 1_000_000))
                seq += 1
                time.sleep(1 / 30)

    try:
        for line in render.stdout:
            if "listening on" in line:
                break
        driver = threading.Thread(target=drive, daemon=True)
        driver.start()
        out = tmp_path / "attach.json"
        r = subprocess.run(HEADCAST + ["bench", "latency", "--attach", f"tcp://127.0.0.1:{lat}", "--seconds", "4",
                                       "--json", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr[-2000:]
        result = json.loads(out.read_text())
        assert result["frames"] >= 40  # ~30 captured frames a second for 4 s
        e2e = result["stages_ms"]["end_to_end"]
        assert 1.0 < e2e["p50"] < 200.0
        assert result["stages_ms"]["features"]["p50"] == 1.0  # the 1 ms stamped between capture and features
    finally:
        done.set()
        render.kill()
        render.wait(10)


def test_attach_with_nothing_there_is_a_clear_error(tmp_path):
    r = subprocess.run(HEADCAST + ["bench", "latency", "--attach", f"tcp://127.0.0.1:{free_port()}", "--seconds", "1",
                                   "--json", str(tmp_path / "x.json")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--latency-bind" in r.stderr
