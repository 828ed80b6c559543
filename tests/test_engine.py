"""StreamingEngine on the CPU backend: window, fading on face-lost and stream-lost, several streams,
equality with the trained network, a real receiver over ZeroMQ, and the inference benchmark CLI."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from inference.engine.engine import EngineConfig, StreamingEngine
from inference.engine.model import to_rgba8
from inference.engine.reference_avatar import reference_avatar
from inference.engine.state import FadeConfig
from streaming.protocol import FeatureFrame, FeatureKind, Flags

RES = 64
DT = 33_333_333  # 30 Hz camera
T0 = 10**12


def make_frames(sid: str, n: int, seed: int = 0, start_seq: int = 0, t0: int = T0):
    rng = np.random.default_rng(seed)
    feats = np.cumsum(rng.normal(0, 0.08, (n, 478, 3)), axis=0).astype(np.float32)
    return [FeatureFrame(sid, start_seq + i, FeatureKind.MP478, feats[i], t0 + i * DT, t0 + i * DT) for i in range(n)]


def lost_frame(sid: str, seq: int, t: int) -> FeatureFrame:
    return FeatureFrame(sid, seq, FeatureKind.MP478, np.zeros((478, 3), np.float32), t, t, flags=Flags.FACE_LOST)


@pytest.fixture(scope="module")
def avatar():
    return reference_avatar(RES, seed=1)


def run(engine, sid, frames, start=0):
    out = []
    for k, f in enumerate(frames):
        out.append(engine.step({sid: [f]}, now_ns=T0 + (start + k) * DT)[sid])
    return out


def eager(model, window):
    with torch.no_grad():
        z = model.net(torch.from_numpy(model.norm.apply(window))[None])
        tex, w = model.decoder(z)
    return z[0].numpy(), w[0].numpy(), to_rgba8(tex)[0].numpy()


def test_window_is_a_ring_of_the_last_T_good_frames(avatar):
    eng = StreamingEngine({"a": avatar})
    frames = make_frames("a", 12)
    st = eng.states["a"]
    eng.step({"a": frames[:1]}, now_ns=T0)
    assert (st.window == frames[0].features.reshape(-1)).all()  # a new stream repeats its first frame
    eng.step({"a": frames[1:3]}, now_ns=T0 + 2 * DT)
    assert (st.window[-1] == frames[2].features.reshape(-1)).all()
    assert (st.window[-2] == frames[1].features.reshape(-1)).all()
    assert (st.window[:-2] == frames[0].features.reshape(-1)).all()
    eng.step({"a": frames[3:12]}, now_ns=T0 + 11 * DT)
    expect = np.stack([f.features.reshape(-1) for f in frames[4:12]])
    assert np.array_equal(st.window, expect)  # T = 8 newest, oldest first
    version = st.version
    eng.step({"a": [lost_frame("a", 12, T0 + 12 * DT)]}, now_ns=T0 + 12 * DT)
    assert np.array_equal(st.window, expect) and st.version == version  # face-lost frames are not pushed
    later = make_frames("a", 1, seed=9, start_seq=13, t0=T0 + 60 * DT)[0]  # 1.6 s gap > reset_after_s
    eng.step({"a": [later]}, now_ns=T0 + 60 * DT)
    assert (st.window == later.features.reshape(-1)).all()  # refilled, no stale expressions


def test_cpu_output_equals_the_trained_network_and_decoder(avatar):
    eng = StreamingEngine({"a": avatar}, EngineConfig(fade=FadeConfig(fade_in_s=1e-6)))
    states = run(eng, "a", make_frames("a", 10))
    st = states[-1]
    z, w, rgba = eager(avatar, eng.states["a"].window)
    assert st.status == "tracking" and st.face_present == 1.0
    np.testing.assert_allclose(st.z, z, atol=1e-5)
    np.testing.assert_allclose(st.weights, w, atol=1e-5)
    assert st.texture.dtype == np.uint8 and st.texture.shape == (RES, RES, 4)
    assert np.abs(st.texture.astype(int) - rgba.astype(int)).max() <= 1
    assert st.seq == 9 and st.t_capture_ns == T0 + 9 * DT
    assert st.t_inference_end_ns >= st.t_inference_start_ns > 0


def test_face_lost_fades_smoothly_to_neutral_and_resumes(avatar):
    fade = FadeConfig(fade_out_s=0.3, fade_in_s=0.08)
    eng = StreamingEngine({"a": avatar}, EngineConfig(fade=fade))
    tracked = run(eng, "a", make_frames("a", 15, seed=2))
    z_last = tracked[-1].z
    neutral = eng.neutral_z("a")
    d0 = np.linalg.norm(z_last - neutral)
    assert d0 > 0.05  # the test avatar is not at neutral to begin with
    lost = [lost_frame("a", 15 + k, T0 + (15 + k) * DT) for k in range(45)]
    faded = run(eng, "a", lost, start=15)
    dists = np.array([np.linalg.norm(s.z - neutral) for s in faded])
    assert all(s.status == "face_lost" for s in faded)
    assert (np.diff(dists) <= 1e-6).all()  # monotone, never a jump back
    assert np.abs(np.diff(np.r_[d0, dists])).max() < 0.15 * d0  # smooth: no step bigger than 15 %
    expect = d0 * np.exp(-DT * 1e-9 / fade.fade_out_s)  # exponential with the configured time constant
    assert dists[0] == pytest.approx(expect, rel=1e-3)
    assert dists[-1] < 0.02 * d0 and faded[-1].face_present < 0.02
    # the direction is the held expression, not something else: z stays on the segment to neutral
    unit = (z_last - neutral) / d0
    mid = faded[5].z - neutral
    assert np.linalg.norm(mid - (mid @ unit) * unit) < 1e-4
    back = run(eng, "a", make_frames("a", 10, seed=3, start_seq=60, t0=T0 + 60 * DT), start=60)
    assert back[0].status == "tracking"
    pres = [s.face_present for s in back]
    assert pres[0] < 0.5 and all(b > a for a, b in zip(pres, pres[1:])) and pres[-1] > 0.97


def test_stream_silence_counts_as_lost_and_fades(avatar):
    eng = StreamingEngine({"a": avatar}, EngineConfig(fade=FadeConfig(hold_s=0.15, fade_out_s=0.3)))
    run(eng, "a", make_frames("a", 10))
    neutral = eng.neutral_z("a")
    held = eng.step({}, now_ns=T0 + 10 * DT)["a"]  # 33 ms of silence: still tracking, no freeze-fade yet
    assert held.status == "tracking"
    states = [eng.step({}, now_ns=T0 + (10 + k) * DT)["a"] for k in range(5, 60)]
    assert states[0].status == "stream_lost"
    d = [np.linalg.norm(s.z - neutral) for s in states]
    assert (np.diff(d) <= 1e-6).all() and d[-1] < 0.05 * d[0]
    resumed = eng.step({"a": make_frames("a", 1, seed=5, start_seq=70, t0=T0 + 70 * DT)}, now_ns=T0 + 70 * DT)["a"]
    assert resumed.status == "tracking"


def test_end_of_stream_flag_fades_too(avatar):
    eng = StreamingEngine({"a": avatar})
    run(eng, "a", make_frames("a", 5))
    eos = FeatureFrame("a", 5, FeatureKind.NONE, np.zeros((0, 0), np.float32), T0 + 5 * DT, T0 + 5 * DT,
                       flags=Flags.END_OF_STREAM)
    st = eng.step({"a": [eos]}, now_ns=T0 + 5 * DT)["a"]
    assert st.status == "stream_lost"


def test_several_streams_are_independent(avatar):
    other = reference_avatar(RES, seed=2)
    eng = StreamingEngine({"a": avatar, "b": other, "c": avatar})
    fa, fb = make_frames("a", 10, seed=1), make_frames("b", 10, seed=2)
    for k in range(10):
        out = eng.step({"a": [fa[k]], "b": [fb[k]]}, now_ns=T0 + k * DT)
    assert set(out) == {"a", "b", "c"}
    assert out["a"].status == "tracking" and out["b"].status == "tracking"
    assert out["c"].status == "waiting" and out["c"].face_present == 0.0  # no stream yet: neutral
    np.testing.assert_allclose(out["c"].z, eng.neutral_z("c"), atol=1e-6)
    assert not np.allclose(out["a"].z, out["b"].z)
    # b goes silent, a keeps streaming: only b fades
    fa2 = make_frames("a", 30, seed=1, start_seq=10, t0=T0 + 10 * DT)
    for k in range(30):
        out = eng.step({"a": [fa2[k]]}, now_ns=T0 + (10 + k) * DT)
    assert out["a"].status == "tracking" and out["a"].face_present == 1.0
    assert out["b"].status == "stream_lost" and out["b"].face_present < 0.2


def test_unchanged_window_reuses_the_decoded_texture(avatar):
    eng = StreamingEngine({"a": avatar}, EngineConfig(fade=FadeConfig(fade_in_s=1e-6)))
    frames = make_frames("a", 3)
    a = eng.step({"a": frames[:1]}, now_ns=T0)
    a = eng.step({"a": frames[1:2]}, now_ns=T0 + DT)["a"]
    b = eng.step({}, now_ns=T0 + DT + 5_000_000)["a"]  # render loop faster than the camera
    assert b.texture is a.texture
    c = eng.step({"a": frames[2:3]}, now_ns=T0 + 2 * DT)["a"]
    assert c.texture is not a.texture


def test_wrong_feature_size_is_treated_as_face_lost(avatar):
    eng = StreamingEngine({"a": avatar})
    run(eng, "a", make_frames("a", 5))
    deca = FeatureFrame("a", 5, FeatureKind.DECA2048, np.ones((2048, 1), np.float32), T0 + 5 * DT, T0 + 5 * DT)
    st = eng.step({"a": [deca]}, now_ns=T0 + 5 * DT)["a"]
    assert st.status == "face_lost"


def test_real_receiver_over_zeromq_drives_the_engine(avatar):
    from streaming.publisher import Publisher
    from streaming.receiver import Receiver, ReceiverConfig

    rx = Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", lost_after_s=0.3, history=16)).start()
    try:
        eng = StreamingEngine({"alice": avatar}, EngineConfig(fade=FadeConfig(hold_s=0.25, fade_out_s=0.1)))
        feats = make_frames("alice", 400, seed=4)
        sent = []

        def send(pub, k):  # stamped now, as a capture node does
            t = time.monotonic_ns()
            f = FeatureFrame("alice", k, FeatureKind.MP478, feats[k].features, t, t)
            sent.append(f)
            pub.send(f)

        with Publisher(rx.bound_endpoint) as pub:
            k = 0
            deadline = time.monotonic() + 5
            while rx.latest("alice") is None and time.monotonic() < deadline:  # slow joiner
                send(pub, k)
                k += 1
                time.sleep(0.01)
            states = []
            for _ in range(30):
                send(pub, k)
                k += 1
                time.sleep(0.01)
                states.append(eng.step(rx)["alice"])
            assert rx.wait_for(lambda r: r.latest("alice").seq == k - 1, 2)
            st = eng.step(rx)["alice"]
        assert st.status == "tracking" and st.face_present > 0.9
        assert st.seq == k - 1
        assert np.array_equal(eng.states["alice"].window[-1], sent[-1].features.reshape(-1))
        assert np.array_equal(eng.states["alice"].window[-2], sent[-2].features.reshape(-1))
        assert st.t_receive_ns >= st.t_capture_ns  # same host, same monotonic clock
        assert st.t_inference_end_ns >= st.t_inference_start_ns >= st.t_receive_ns
        assert sum(s.seq >= 0 for s in states) > 20
        # the publisher is gone: the receiver marks the stream lost, the avatar relaxes
        time.sleep(0.5)
        assert rx.snapshot()["alice"].lost
        fading = [eng.step(rx)["alice"] for _ in range(3)]
        assert fading[-1].status == "stream_lost"
        time.sleep(0.5)
        assert eng.step(rx)["alice"].face_present < 0.05
    finally:
        rx.stop()


def test_bench_inference_cli_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "tools.cli", "bench", "inference", "--device", "cpu", "--avatars", "1,2",
                        "--res", "64", "--iters", "5", "--warmup", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    assert "reference decoder" in r.stdout and "step p50" in r.stdout
    data = json.loads(out.read_text())
    assert [c["avatars"] for c in data["results"]] == [1, 2]
    for c in data["results"]:
        assert c["res"] == 64 and c["step_ms"]["n"] == 5 and c["step_ms"]["p50"] > 0
        assert c["lstm_ms"]["p50"] > 0 and c["decoder_ms"]["p50"] > 0
    bad = subprocess.run([sys.executable, "-m", "tools.cli", "bench", "inference", "--device", "cuda"],
                         capture_output=True, text=True, timeout=120)
    if not torch.cuda.is_available():
        assert bad.returncode == 2 and "no CUDA device" in bad.stderr
