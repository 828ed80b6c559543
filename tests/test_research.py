"""The research harness (inference/research): the animation ablation runs end to end on synthetic
data and on an npz in the format every avatar build leaves in its work directory."""
from __future__ import annotations

import numpy as np

from inference.research.ablate_animation import VARIANTS, Clip, lag_frames, load_npz, markdown, run_ablation
from inference.research.synthetic import SyntheticWorld


def test_lag_frames_finds_a_known_delay():
    rng = np.random.default_rng(0)
    ref = np.cumsum(rng.normal(size=(300, 6)), axis=0)
    ref -= np.convolve(ref[:, 0], np.ones(25) / 25, "same")[:, None]  # keep it wiggly, not a trend
    assert lag_frames(np.roll(ref, 2, axis=0)[4:-4], ref[4:-4]) == 2  # prediction two frames late
    assert lag_frames(np.roll(ref, -1, axis=0)[4:-4], ref[4:-4]) == -1
    assert lag_frames(ref, ref) == 0


def test_ablation_on_an_npz_like_the_builders(tmp_path):
    world = SyntheticWorld(seed=1)
    c = world.clip(300)
    hold = np.zeros(300, bool)
    hold[250:] = True
    np.savez(tmp_path / "data.npz", features=c.features, z=c.z, valid=c.valid, holdout=hold,
             segments=np.zeros(300, np.int64))
    train = load_npz(tmp_path / "data.npz", "target")
    assert train.features.shape == (300, 1434) and train.holdout.sum() == 50
    driver = world.clip(200, person=1, clip_seed=5, invalid_fraction=0.0)
    evals = [Clip("driver B", driver.features, driver.z, driver.valid)]
    variants = {k: VARIANTS[k] for k in ("per-frame MLP (T=1, no recurrence)", "LSTM T=8 + residual (default)")}
    rows = run_ablation(train, evals, steps=120, variants=variants)
    assert [r["variant"] for r in rows] == list(variants)
    for r in rows:
        assert set(r) >= {"holdout", "driver B", "train_s", "infer_ms"} and r["infer_ms"] > 0
        assert np.isfinite([r["holdout"]["r2"], r["holdout"]["corr"], r["driver B"]["r2"]]).all()
        assert r["holdout"]["r2"] > 0.2  # learns the synthetic map well beyond the mean face
    table = markdown(rows, ["driver B"], "synthetic")
    assert table.count("\n| ") == 1 + len(rows) and "driver B: R² / r / lag" in table
