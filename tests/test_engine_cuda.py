"""CUDA backend: graph replay equals eager fp32, batched replay, RGBA8 on the device, fading in-graph.

Needs a CUDA GPU; every test is skipped (with the reason) without one. No ZeroMQ here, so the file
runs on GPU machines with only torch installed.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from inference.engine.engine import EngineConfig, StreamingEngine
from inference.engine.model import animate, fold_animation, stack_folded, to_rgba8
from inference.engine.reference_avatar import reference_avatar
from streaming.protocol import FeatureFrame, FeatureKind, Flags

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device (torch.cuda.is_available() is False)"),
]

RES = 128


def frames_for(sid: str, n: int, seed: int, t0: int = 10**12, dt: int = 33_000_000):
    rng = np.random.default_rng(seed)
    feats = np.cumsum(rng.normal(0, 0.05, (n, 478, 3)), axis=0).astype(np.float32)
    return [FeatureFrame(sid, i, FeatureKind.MP478, feats[i], t0 + i * dt, t0 + i * dt) for i in range(n)]


def eager_reference(model, window: np.ndarray):
    """fp32 CPU: the trained network as written (nn.LSTM) + the decoder, then RGBA8."""
    with torch.no_grad():
        x = torch.from_numpy(model.norm.apply(window))[None]
        z = model.net(x)
        tex, w = model.decoder(z)
        return to_rgba8(tex)[0].numpy(), w[0].numpy(), z[0].numpy()


@pytest.mark.parametrize("n_avatars", [1, 2, 4, 8])
def test_batched_graph_replay_matches_eager_fp32(n_avatars):
    models = {f"s{i}": reference_avatar(RES, seed=i) for i in range(n_avatars)}  # distinct weights: vmap path
    eng = StreamingEngine(models, EngineConfig(device="cuda"))
    batch = eng.backend.groups[0][1]
    assert batch.graph is not None and len(eng.backend.groups) == 1  # one replay for all avatars
    streams = {sid: frames_for(sid, 12, i) for i, sid in enumerate(models)}
    t0 = 10**12
    for k in range(12):
        now = t0 + k * 33_000_000
        states = eng.step({sid: [fr[k]] for sid, fr in streams.items()}, now_ns=now)
    for sid, model in models.items():
        st = states[sid]
        assert st.status == "tracking"
        assert isinstance(st.texture, torch.Tensor) and st.texture.is_cuda
        assert st.texture.dtype == torch.uint8 and tuple(st.texture.shape) == (RES, RES, 4)
        # presence after 12 frames of 33 ms with fade_in 80 ms is 1 - e^-4.5: compare at the same fade
        window = eng.states[sid].window
        rgba_ref, w_ref, z_ref = eager_reference(model, window)
        p = st.face_present
        neutral = model.net.neutral_z.numpy()
        z_expect = neutral + p * (z_ref - neutral)
        np.testing.assert_allclose(st.z, z_expect, atol=2e-2, rtol=2e-2)
        with torch.no_grad():
            tex, w = model.decoder(torch.from_numpy(z_expect)[None].float())
        np.testing.assert_allclose(st.weights, w[0].numpy(), atol=3e-2, rtol=3e-2)
        diff = np.abs(st.texture.cpu().numpy().astype(int) - to_rgba8(tex)[0].numpy().astype(int))
        assert diff.max() <= 3 and diff.mean() < 0.5


def test_graph_equals_eager_fp16_exactly_enough():
    models = {"a": reference_avatar(RES, seed=1), "b": reference_avatar(RES, seed=2)}
    graph = StreamingEngine(models, EngineConfig(device="cuda", cuda_graphs=True))
    eager = StreamingEngine(models, EngineConfig(device="cuda", cuda_graphs=False))
    frames = {sid: frames_for(sid, 10, i) for i, sid in enumerate(models)}
    for k in range(10):
        now = 10**12 + k * 33_000_000
        a = graph.step({s: [f[k]] for s, f in frames.items()}, now_ns=now)
        b = eager.step({s: [f[k]] for s, f in frames.items()}, now_ns=now)
    for sid in models:
        assert torch.equal(a[sid].texture, b[sid].texture) or \
            (a[sid].texture.int() - b[sid].texture.int()).abs().max() <= 1
        np.testing.assert_allclose(a[sid].weights, b[sid].weights, atol=1e-3)


def test_shared_decoder_batches_without_vmap_and_folded_lstm_matches():
    base = reference_avatar(RES, seed=3)
    models = {f"s{i}": base for i in range(4)}  # four streams driving the same avatar
    eng = StreamingEngine(models, EngineConfig(device="cuda"))
    batch = eng.backend.groups[0][1]
    assert not hasattr(batch, "_stacked")
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (4, base.window, 1434)).astype(np.float32))
    p32 = stack_folded([fold_animation(base.net, base.norm)] * 4)
    z32 = animate(p32, x, "lstm", 1)
    z16 = animate({k: v.cuda().half() for k, v in p32.items()}, x.cuda().half(), "lstm", 1).float().cpu()
    np.testing.assert_allclose(z16.numpy(), z32.numpy(), atol=2e-2)


def test_face_lost_fades_inside_the_graph():
    models = {"a": reference_avatar(RES, seed=4)}
    eng = StreamingEngine(models, EngineConfig(device="cuda"))
    frames = frames_for("a", 30, 0)
    t0 = 10**12
    for k in range(20):
        st = eng.step({"a": [frames[k]]}, now_ns=t0 + k * 33_000_000)["a"]
    z_track = st.z.copy()
    neutral = eng.neutral_z("a")
    dists = []
    for k in range(20, 40):
        lost = FeatureFrame("a", k, FeatureKind.MP478, np.zeros((478, 3), np.float32), t0 + k * 33_000_000,
                            t0 + k * 33_000_000, flags=Flags.FACE_LOST)
        st = eng.step({"a": [lost]}, now_ns=t0 + k * 33_000_000)["a"]
        dists.append(float(np.linalg.norm(st.z - neutral)))
    assert st.status == "face_lost"
    assert all(b <= a + 1e-3 for a, b in zip(dists, dists[1:]))  # monotone approach
    assert dists[-1] < 0.2 * np.linalg.norm(z_track - neutral)


def test_rgba8_conversion_on_device():
    tex = torch.rand(2, 4, 16, 16, device="cuda", dtype=torch.float16)
    out = to_rgba8(tex)
    assert out.is_cuda and out.dtype == torch.uint8 and tuple(out.shape) == (2, 16, 16, 4)
    rgb = to_rgba8(torch.rand(1, 3, 8, 8, device="cuda"))
    assert tuple(rgb.shape) == (1, 8, 8, 4) and bool((rgb[..., 3] == 255).all())
