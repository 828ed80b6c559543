import numpy as np
import pytest

from inference.evaluation.transfer_metrics import agreement, best_lag, jitter, pearson, still_mask


def test_identical_shape_different_gain_scores_perfectly():
    t = np.linspace(0, 6 * np.pi, 300)
    d = np.sin(t)
    a = 0.3 * np.sin(t) + 5.0
    g = agreement("mouth", d, a)
    assert g.pearson_r == pytest.approx(1.0) and g.nmae < 1e-9 and g.lag_frames == 0


def test_lag_is_found_with_sign():
    rng = np.random.default_rng(0)
    d = np.convolve(rng.standard_normal(400), np.ones(5) / 5, "same")
    late = np.concatenate([np.zeros(3), d[:-3]])
    assert best_lag(d, late, 8) == 3
    assert best_lag(late, d, 8) == -3


def test_unrelated_signals_score_low_and_noise_raises_jitter():
    rng = np.random.default_rng(1)
    d = np.convolve(rng.standard_normal(500), np.ones(9) / 9, "same")
    a = np.convolve(rng.standard_normal(500), np.ones(9) / 9, "same")
    assert abs(pearson(d, a)) < 0.2
    drv = np.stack([d, d], 1)
    mask = still_mask(drv)
    smooth = np.stack([d, d], 1)
    noisy = smooth + 0.3 * rng.standard_normal(smooth.shape)
    assert jitter(noisy, mask) > 2 * jitter(smooth, mask)


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError):
        agreement("x", np.zeros(5), np.zeros(6))


def test_segment_levels_do_not_decide_the_lag():
    """Three held-out blocks at different expression levels, each with a little motion that the avatar
    follows 2 frames late. Pooled without segments, the level steps dominate and shifting pairs across
    block borders pulls the peak towards 0; within segments the real lag is found."""
    rng = np.random.default_rng(3)
    blocks, seg = [], []
    for k, level in enumerate((0.0, 5.0, 2.0)):
        blocks.append(level + np.convolve(rng.standard_normal(40), np.ones(4) / 4, "same"))
        seg += [k] * 40
    d = np.concatenate(blocks)
    seg = np.array(seg)
    late = np.concatenate([np.r_[b[:1].repeat(2), b[:-2]] for b in blocks])
    g = agreement("mouth", d, late, 8, segments=seg)
    assert g.lag_frames == 2 and g.lag_correlation > 0.9
    assert g.pearson_r > 0.95  # r pools the blocks: the levels are expression changes too


def test_lag_is_not_reported_without_common_motion():
    """Blocks that differ in level but where the avatar does not share the within-block motion: r is
    high (the levels agree), but there is nothing to time, so the lag is None, not a number."""
    rng = np.random.default_rng(4)
    seg = np.repeat([0, 1, 2], 30)
    level = np.array([0.0, 3.0, 1.0])[seg]
    d = level + 0.05 * rng.standard_normal(90)
    a = 2 * level + 0.05 * rng.standard_normal(90)
    g = agreement("mouth", d, a, 8, segments=seg)
    assert g.pearson_r > 0.99 and g.lag_frames is None and g.lag_correlation < 0.5


def test_jitter_ignores_jumps_between_segments():
    seg = np.repeat([0, 1], 50)
    x = np.where(seg == 0, 0.0, 10.0)[:, None] + np.zeros((100, 2))
    x[:, 1] += np.linspace(0, 1, 100)  # a steady drift, same everywhere
    mask = np.ones(100, bool)
    assert jitter(x, mask, seg) < 0.5 * jitter(x, mask)


def test_jitter_inside_blocks_is_not_timed():
    """Blocks at different levels whose only within-block motion is tracker jitter, which the avatar
    happens to share (same noise): correlated, but not motion — the lag is None."""
    rng = np.random.default_rng(5)
    seg = np.repeat([0, 1, 2], 12)
    noise = 0.004 * rng.standard_normal(36)
    d = np.array([0.03, 0.30, 0.22])[seg] + noise
    a = np.array([0.03, 0.31, 0.23])[seg] + np.r_[noise[2:], noise[:2]]
    g = agreement("mouth_open", d, a, 8, segments=seg)
    assert g.pearson_r > 0.99 and g.lag_frames is None
