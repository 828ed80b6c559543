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
