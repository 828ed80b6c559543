"""Animation network training on synthetic data: learning, residual encoder, windows, package round trip.

The data come from inference/research/synthetic.py (a hidden expression state drives the target's
latents and a driver's 1434-d features); they exercise the code, they are not the real pipeline.
Runs are kept to a few hundred steps: the CI host has 2 shared cores.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from inference.animation.augment import make_runs, run_ids, window_positions
from inference.animation.config import AnimationConfig, AugmentConfig, ResidualEncoderConfig
from inference.animation.network import AnimationNet
from inference.animation.residual_encoder import ResidualEncoder
from inference.animation.serialize import animation_manifest, animation_tensors, load_animation
from inference.research.synthetic import SyntheticWorld
from inference.animation.train import evaluate, train_animation
from inference.engine.reference_decoder import ReferenceDecoder

N = 360
HOLD = slice(300, 360)


@pytest.fixture(scope="module")
def clip():
    return SyntheticWorld(seed=3).clip(N)


@pytest.fixture(scope="module")
def holdout():
    h = np.zeros(N, bool)
    h[HOLD] = True
    return h


@pytest.fixture(scope="module")
def trained(clip, holdout):
    cfg = AnimationConfig.quick(steps=300)
    return train_animation(clip.features, clip.z, clip.valid, cfg, holdout=holdout)


def test_training_beats_the_trivial_baseline_on_held_out_frames(trained, clip):
    net, norm, metrics = trained
    hold, train = metrics["holdout"], metrics["train"]
    assert train["z_r2"] > 0.85  # fits the frames it saw
    # held-out: well below the constant-mean predictor (r2 = 0) and correlated per latent dimension
    assert hold["z_mse"] < 0.75 * hold["z_mse_mean_baseline"], hold
    assert hold["z_corr"] > 0.35, hold
    assert metrics["frames"]["holdout"] == int(clip.valid[HOLD].sum())
    assert metrics["seconds"] < 60 and np.isfinite(metrics["final_loss"])
    assert 0.5 < metrics["pca_variance_kept"] <= 1.0 + 1e-6


def test_untrained_network_predicts_the_mean_and_training_moves_it(clip):
    net = AnimationNet(1434, clip.z.shape[1], AnimationConfig())
    x = torch.randn(3, 8, 1434)
    assert torch.allclose(net.eval()(x), torch.zeros(3, clip.z.shape[1]))  # head starts at zero


def test_residual_encoder_is_used_in_training_and_replaced_by_its_prior_at_inference(clip, holdout):
    cfg = AnimationConfig.quick(steps=300, residual=ResidualEncoderConfig(code_dim=4, kl_weight=0.002))
    net, norm, metrics = train_animation(clip.features, clip.z, clip.valid, cfg, holdout=holdout)
    assert net.code_dim == 4
    x = torch.from_numpy(norm.apply(clip.features[:64])).reshape(8, 8, -1)
    with torch.no_grad():
        prior = net(x)  # inference path: no code given
        zeros = net(x, torch.zeros(8, 4))
        coded = net(x, torch.randn(8, 4, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(prior, zeros)  # the prior is the zero code
    # The network learned to read the code (it carries information at train time) ...
    assert (coded - prior).abs().mean() > 0.02 * net.z_scale
    # ... and the posterior code of the true latents helps on training frames, more than nothing.
    assert metrics["train"]["z_r2_with_code"] > metrics["train"]["z_r2"]
    # ... yet the prior alone is still far better than the baseline (the net does not lean on it).
    assert metrics["holdout"]["z_r2"] > 0.25
    # The package never carries the encoder: inference has no access to target latents.
    assert not any("residual" in k or "enc" in k for k in animation_tensors(net, norm))


def test_code_dropout_replaces_whole_codes_by_the_prior():
    enc = ResidualEncoder(16, ResidualEncoderConfig(code_dim=3, code_dropout=0.5))
    mu, logvar = torch.ones(4000, 3), torch.full((4000, 3), -20.0)
    code = enc.sample(mu, logvar)
    dropped = (code == 0).all(1).float().mean().item()
    assert 0.45 < dropped < 0.55
    assert ((code == 0).all(1) | (code - 1).abs().lt(1e-3).all(1)).all()  # all or nothing per window


def test_no_residual_encoder_variant(clip, holdout):
    cfg = AnimationConfig.quick(steps=60, residual=ResidualEncoderConfig(enabled=False))
    net, _, metrics = train_animation(clip.features, clip.z, clip.valid, cfg, holdout=holdout)
    assert net.code_dim == 0 and "z_r2_with_code" not in metrics["train"]


@pytest.mark.parametrize("window", [1, 4, 16])
def test_window_length_is_configurable_and_recorded(clip, window):
    cfg = AnimationConfig.quick(steps=20, window=window)
    net, norm, _ = train_animation(clip.features, clip.z, clip.valid, cfg)
    assert net.window == window
    assert animation_manifest(net, norm, "mp478")["window"] == window
    out = net(torch.zeros(2, window, 1434))
    assert out.shape == (2, clip.z.shape[1])


def test_mlp_ablation_is_per_frame():
    with pytest.raises(ValueError, match="window must be 1"):
        AnimationConfig(arch="mlp", window=8)
    net = AnimationNet(1434, 8, AnimationConfig(arch="mlp", window=1))
    assert not hasattr(net, "rnn")


def test_save_load_round_trip_through_safetensors_is_exact(trained, tmp_path, clip):
    net, norm, metrics = trained
    path = tmp_path / "weights.safetensors"
    save_file(animation_tensors(net, norm), str(path))
    manifest = json.loads(json.dumps(animation_manifest(net, norm, "mp478", metrics)))  # JSON-able
    net2, norm2 = load_animation(load_file(str(path)), manifest)
    x = torch.from_numpy(norm.apply(clip.features[:80])).reshape(10, 8, -1)
    x2 = torch.from_numpy(norm2.apply(clip.features[:80])).reshape(10, 8, -1)
    with torch.no_grad():
        assert torch.equal(net(x), net2(x2))
    assert torch.equal(net.neutral_z, net2.neutral_z)
    assert net2.config == net.config


def test_loading_names_what_is_wrong(trained):
    net, norm, _ = trained
    tensors = animation_tensors(net, norm)
    manifest = animation_manifest(net, norm, "mp478")
    broken = dict(tensors)
    del broken["anim.net.head.weight"]
    with pytest.raises(ValueError, match="head.weight"):
        load_animation(broken, manifest)
    broken = dict(tensors)
    broken["anim.net.head.bias"] = torch.zeros(3)
    with pytest.raises(ValueError, match="shape"):
        load_animation(broken, manifest)
    bad_cfg = json.loads(json.dumps(manifest))
    bad_cfg["config"]["lstm_magic"] = 1
    with pytest.raises(ValueError, match="unknown keys"):
        load_animation(tensors, bad_cfg)
    broken = dict(tensors)
    del broken["anim.norm.std"]
    with pytest.raises(ValueError, match="norm"):
        load_animation(broken, manifest)


def test_windows_respect_runs_and_end_at_the_target():
    n = 40
    valid = np.ones(n, bool)
    valid[10:13] = False
    hold = np.zeros(n, bool)
    hold[30:] = True
    runs = make_runs(valid, run_ids(n, None, hold), ~hold)
    rng = np.random.default_rng(0)
    aug = AugmentConfig(repeat_prob=0.2, skip_prob=0.3)
    win = window_positions(runs, np.arange(len(runs)), 8, aug, rng)
    assert (win[:, -1] == runs.order).all()  # the label frame is always the last
    assert not np.isin(win, [10, 11, 12]).any()  # invalid frames never enter a window
    assert (win < 30).all()  # never reaches into the held-out run
    assert (np.diff(win, axis=1) >= 0).all()  # oldest first
    spans = win[:, -1] - win[:, 0]
    assert spans.max() > 7  # skips make some windows span more time
    first = window_positions(runs, np.array([0]), 8, None, rng)
    assert (first == 0).all()  # a run's start repeats its first frame, like the engine


def test_decoder_losses_train_geometry_and_leave_the_decoder_untouched(clip, holdout):
    dec = ReferenceDecoder(clip.z.shape[1], 32, blendshapes=8, seed_res=4)
    before = {k: v.clone() for k, v in dec.state_dict().items()}
    flags = [p.requires_grad for p in dec.parameters()]
    cfg = AnimationConfig.quick(steps=40)
    cfg = AnimationConfig.from_dict({**cfg.to_dict(), "loss": {**cfg.to_dict()["loss"], "texture_weight": 0.5,
                                                               "texture_every": 4}})
    net, norm, metrics = train_animation(clip.features, clip.z, clip.valid, cfg, holdout=holdout, decoder=dec)
    assert "weights_r2" in metrics["train"] and np.isfinite(metrics["train"]["weights_mse"])
    for k, v in dec.state_dict().items():
        assert torch.equal(v, before[k])
    assert [p.requires_grad for p in dec.parameters()] == flags and dec.training


def test_bad_inputs_are_refused(clip):
    with pytest.raises(ValueError, match="share N"):
        train_animation(clip.features[:10], clip.z[:9], clip.valid[:10], AnimationConfig.quick(steps=1))
    with pytest.raises(ValueError, match="valid training frames"):
        train_animation(clip.features[:20], clip.z[:20], np.zeros(20, bool), AnimationConfig.quick(steps=1))
    with pytest.raises(ValueError, match="holdout"):
        train_animation(clip.features, clip.z, clip.valid, AnimationConfig.quick(steps=1), holdout=np.zeros(3, bool))


def test_evaluate_reports_baseline_consistently(trained, clip):
    net, norm, _ = trained
    runs = make_runs(clip.valid, np.zeros(N, int), np.ones(N, bool))
    m = evaluate(net, torch.from_numpy(norm.apply(clip.features)), torch.from_numpy(clip.z), runs, net.window)
    assert m["z_r2"] == pytest.approx(1 - m["z_mse"] / m["z_mse_mean_baseline"])


def test_non_finite_frames_are_treated_as_invalid(clip):
    feats = clip.features.copy()
    z = clip.z.copy()
    feats[40:45] = np.nan  # e.g. no face found: the builder may pass NaN rows
    z[100:103] = np.inf
    net, _, metrics = train_animation(feats, z, np.ones(N, bool), AnimationConfig.quick(steps=10))
    assert metrics["frames"]["valid"] == N - 8
    assert all(torch.isfinite(p).all() for p in net.parameters())


def test_splices_keep_the_newest_frames_and_take_the_rest_from_another_window():
    from inference.animation.augment import splice_windows

    b, t = 64, 8
    x = torch.arange(b, dtype=torch.float32)[:, None, None].expand(b, t, 3).clone()  # row id everywhere
    g = torch.Generator().manual_seed(0)
    out = splice_windows(x, AugmentConfig(splice_prob=1.0, splice_keep=3), g)
    assert torch.equal(out[:, -1], x[:, -1])  # the newest frame (the target's) never changes
    for row in range(b):
        own = out[row, :, 0] == row
        k = int(own.flip(0).cumprod(0).sum())  # newest frames still the window's own
        assert 1 <= k <= 3 or (own.all() and k == t)  # donor may be the row itself
        assert (out[row, : t - k, 0] == out[row, 0, 0]).all()  # the older part is one donor's
    assert torch.equal(splice_windows(x, AugmentConfig(splice_prob=0.0), g), x)


def _step_response_lag(net, norm, feature_dim: int, window: int) -> int:
    """Frames until the output crosses half-way after the input jumps from one state to another."""
    a, b = np.zeros(feature_dim, np.float32), np.ones(feature_dim, np.float32)
    seq = np.stack([a] * window + [b] * window)
    outs = []
    with torch.no_grad():
        for i in range(window, len(seq)):
            outs.append(float(net(torch.from_numpy(norm.apply(seq[i - window + 1:i + 1]))[None])[0, 0]))
    lo, hi = outs[0], outs[-1]
    return int(np.argmax(np.array(outs) > (lo + hi) / 2))


def test_splices_make_the_network_follow_an_abrupt_change_at_once():
    """A clip whose expression only ever changes slowly (a ramp over ~20 frames): trained without
    splices the network learns to read the whole window and answers a sudden step late; with them
    it follows the newest frame."""
    n, d = 600, 6
    state = (np.sin(np.arange(n) / 20.0) > 0).astype(np.float32)
    state = np.convolve(state, np.ones(21) / 21, "same").astype(np.float32)  # slow ramps only
    feats = state[:, None] * np.ones((1, d), np.float32) + 0.02 * np.random.default_rng(0).standard_normal((n, d)).astype(np.float32)
    z = state[:, None].astype(np.float32)
    lags = {}
    for prob in (0.0, 0.3):
        cfg = AnimationConfig(pca_dim=0, steps=300, batch=32, window=8, seed=0,
                              augment=AugmentConfig(splice_prob=prob, skip_prob=0.0, repeat_prob=0.0))
        net, norm, _ = train_animation(feats, z, np.ones(n, bool), cfg)
        lags[prob] = _step_response_lag(net, norm, d, 8)
    print("step response lag (frames) by splice probability:", lags)
    assert lags[0.3] <= 1 and lags[0.3] < lags[0.0], lags
