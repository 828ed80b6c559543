"""End to end: a capture node on a real clip emits Live Link Face, VMC and Unified-Expressions OSC
while it streams mp478; three `headcast adapt` processes turn those back into expr52 streams; one
real receiver takes all four; the avatar (a real `--quick` build, which accepts mp478 and expr52) is
driven by each, and every route must move it like the direct one."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from _avatar_quick import quick_build
from _processes import Node
from capture.interop.livelink import LiveLinkSender
from capture.interop.osc import OscSender
from capture.node import CaptureConfig, CaptureNode
from capture.sources import SourceConfig
from streaming.protocol import FeatureKind
from streaming.receiver import Receiver, ReceiverConfig
from tools.samples import sample_path


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


def _udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_package_lists_the_kinds_it_accepts(package_dir, tmp_path):
    from inference.avatar_package import AvatarPackage

    pkg = AvatarPackage.load(package_dir)
    assert pkg.feature_kinds == ("mp478", "expr52")
    raw = json.loads((package_dir / "avatar.json").read_text())
    assert raw["feature_kinds"] == ["mp478", "expr52"] and raw["feature_maps"]["expr52"]["into"] == "mp478"
    assert raw["feature_maps"]["expr52"]["metrics"]["frames"] > 50


def _drive(model, frames):
    from inference.engine.engine import EngineConfig, StreamingEngine

    engine = StreamingEngine({"s": model}, EngineConfig(device="cpu", threads=1))
    out = {}
    for f in frames:
        if f.kind is FeatureKind.NONE:
            continue
        state = engine.step({"s": [f]}, now_ns=f.t_capture_ns)["s"]
        out[f.t_capture_ns] = (np.asarray(state.weights, np.float32), state.status)
    return out, engine.feature_counters()["s"]


def test_capture_outputs_round_trip_into_the_avatar(package_dir, tmp_path):
    from inference.avatar_package import AvatarPackage
    from inference.engine.package_loader import avatar_model_from_package

    rx = Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:0", history=512)).start()
    ports = {k: _udp_port() for k in ("livelink", "vmc", "osc")}
    adapters = []
    try:
        for kind, port in ports.items():
            adapters.append(Node(["adapt", kind, "--listen", f"127.0.0.1:{port}", "--connect", rx.bound_endpoint,
                                  "--stream", kind]))
        emitters = (LiveLinkSender("127.0.0.1", ports["livelink"]), OscSender("127.0.0.1", ports["vmc"], "vmc"),
                    OscSender("127.0.0.1", ports["osc"], "unified"))
        # Real time, so UDP and the adapters keep up as they would with a camera.
        stats = CaptureNode(CaptureConfig(SourceConfig(str(sample_path("single_face.mp4")), realtime=True),
                                          rx.bound_endpoint, "direct", emitters=emitters)).run()
        assert stats.face_frames >= 60
        assert rx.wait_for(lambda r: all(len(r.window_received(k, 512)) >= stats.face_frames - 5 for k in ports), 10), \
            {k: len(rx.window_received(k, 512)) for k in ports}
        for a in adapters:
            a.terminate()
            assert json.loads(a.stdout.strip().splitlines()[-1])["malformed"] == 0
        streams = {k: [r.frame for r in rx.window_received(k, 512)] for k in ("direct", *ports)}
    finally:
        for a in adapters:
            a.kill()
        rx.stop()
    assert all(f.kind is FeatureKind.EXPR52 for k in ports for f in streams[k] if f.kind is not FeatureKind.NONE)
    model = avatar_model_from_package(AvatarPackage.load(package_dir))
    direct, _ = _drive(model, streams["direct"])
    # Capture times travel with each format (Live Link's timecode, VMC's /VMC/Ext/T) or are the
    # adapter's arrival times (Unified OSC has none), so frames are paired by order, not by time.
    direct_w = np.array([w for w, s in direct.values() if s == "tracking"])
    assert len(direct_w) >= 50
    moving = direct_w.std(0) > 1e-3
    for kind in ports:
        out, counters = _drive(model, streams[kind])
        w = np.array([v for v, s in out.values() if s == "tracking"])
        assert counters["unsupported_kind"] == 0 and len(w) >= len(direct_w) - 8, (kind, len(w), len(direct_w))
        n = min(len(w), len(direct_w))
        a, b = direct_w[-n:, moving], w[-n:, moving]
        r = [np.corrcoef(a[:, k], b[:, k])[0, 1] for k in range(a.shape[1])]
        # The avatar's blendshape weights driven through the named space follow the direct drive.
        # (measured: median r 0.74 for each route, the man's clip, quick avatar; eval transfer --via is the
        # signal-level measure, docs/ANIMATION.md)
        assert np.nanmedian(r) > 0.6, (kind, np.round(r, 2))
