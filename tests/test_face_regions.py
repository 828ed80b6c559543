"""Upper/lower face regions, the relaxed face of a clip that never shows one, regional recombination
and the spread-out held-out blocks — on the real sample clips where landmarks matter."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from calibration.neutral import estimate_neutral
from inference.animation import AnimationConfig, train_animation
from inference.animation.train import RecombinedSamples
from inference.features.expression_signals import (
    LEFT_BROW, LEFT_LID_PAIRS, LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, RIGHT_BROW, RIGHT_LID_PAIRS,
    UPPER_INNER_LIP, compute_signals, eye_opening,
)
from inference.features.mp478 import Mp478Extractor
from inference.head_model.face_regions import RegionSplit, draw_pairs, relaxed_face, texel_upper_weight
from inference.head_model.frame_selection import holdout_blocks
from inference.head_model.train_vae import RecombinedTextures, TrainData
from inference.head_model.uv_atlas import texel_table

from test_features import MAN_NEUTRAL, _track

# The woman's usable frames (the builder rejects ~60-230 for a hand over her face): she cries with
# her eyes shut, then laughs with her mouth open — never eyes open with the mouth closed.
WOMAN_KEPT = list(range(0, 60)) + list(range(234, 472))


@pytest.fixture(scope="module")
def woman_canonical() -> np.ndarray:
    ex = Mp478Extractor()
    marks = _track("WolfgangLanger_Pexels.mp4")
    return np.array([ex.canonical(marks[i])[0] for i in WOMAN_KEPT])


@pytest.fixture(scope="module")
def man_canonical() -> np.ndarray:
    ex = Mp478Extractor()
    return np.array([ex.canonical(m)[0] for m in _track("single_face.mp4")])


def test_region_weights_keep_eyes_and_brows_apart_from_the_lips(man_canonical):
    neutral = np.median(man_canonical[list(MAN_NEUTRAL)], 0)
    w = RegionSplit().upper_weight(neutral, neutral)
    lids = [i for pair in RIGHT_LID_PAIRS + LEFT_LID_PAIRS for i in pair]
    lips = [UPPER_INNER_LIP, LOWER_INNER_LIP, MOUTH_LEFT, MOUTH_RIGHT, 0, 17]
    assert w[lids + list(RIGHT_BROW + LEFT_BROW)].min() > 0.99
    assert w[lips].max() < 0.02
    order = np.argsort(neutral[:, 1])
    assert np.all(np.diff(w[order]) >= -1e-7)  # monotone in height: one soft border, no islands


def test_relaxed_face_of_a_clip_that_never_shows_one(woman_canonical):
    c = woman_canonical
    r = relaxed_face(c)
    s = compute_signals(r.canonical)
    mouth = np.linalg.norm(c[:, UPPER_INNER_LIP] - c[:, LOWER_INNER_LIP], axis=-1)
    eyes = eye_opening(c)
    relaxed_eyes = float(eye_opening(r.canonical[None])[0])
    assert s.mouth_open <= np.quantile(mouth, 0.2) and relaxed_eyes >= np.quantile(eyes, 0.5)
    # No frame of hers is that face: the closed-mouth frames are the ones with shut eyes.
    both = (mouth <= s.mouth_open + 0.02) & (eyes >= relaxed_eyes - 0.05)
    assert both.mean() < 0.05, both.mean()
    # The calibration estimator (low activity around the median) lands on her laugh instead.
    calib = compute_signals(estimate_neutral(c).canonical)
    assert calib.mouth_open > 3 * s.mouth_open
    # Its upper face comes from the laughing passage (frames 234 on, open eyes), never from her crying.
    assert (r.upper_frames >= 60).all()


def test_relaxed_face_of_a_relaxed_recording_is_its_neutral(man_canonical):
    """On a calibration-like recording (the man's first, relaxed second) both estimators agree."""
    relaxed = man_canonical[:17]  # frames 0-16: relaxed (he starts to smile at 18)
    a = relaxed_face(relaxed).canonical
    b = estimate_neutral(relaxed, source="test").canonical
    rms = float(np.sqrt(((a - b) ** 2).sum(-1).mean()))
    # Closer to each other than a typical relaxed frame is to either (tracker jitter, small motion).
    spread = float(np.median(np.sqrt(((relaxed - b) ** 2).sum(-1).mean(-1))))
    assert rms < 0.7 * spread, (rms, spread)
    sa, sb = compute_signals(a), compute_signals(b)
    assert abs(sa.mouth_open - sb.mouth_open) < 0.01 and abs(sa.smile_width - sb.smile_width) < 0.02


def test_relaxed_face_needs_frames():
    with pytest.raises(ValueError):
        relaxed_face(np.zeros((2, 478, 3), np.float32))


def test_texel_weights_follow_the_surface_height():
    """A strip mesh from y = -2 (chin) to y = 1 (forehead), unwrapped along v: texel weights rise
    from 0 to 1 with the height of the surface point they show, crossing 0.5 at the border."""
    neutral = np.zeros((478, 3), np.float32)
    neutral[[33, 133, 263, 362], 1] = 0.0  # eye line at 0
    neutral[0, 1] = -1.0  # upper lip at -1 → border at -0.55
    ys = np.linspace(-2, 1, 31)
    positions = np.array([[x, y, 0] for y in ys for x in (0.0, 1.0)], np.float32)
    uvs = np.array([[x, (y + 2) / 3] for y in ys for x in (0.0, 1.0)], np.float32)
    faces = np.array([[2 * i, 2 * i + 1, 2 * i + 3] for i in range(30)] + [[2 * i, 2 * i + 3, 2 * i + 2] for i in range(30)])
    table = texel_table(uvs, faces, 64, len(faces))
    split = RegionSplit()
    w = texel_upper_weight(split, neutral, positions, faces, table)
    rows = w.reshape(64, 64)[:, 32]  # one column
    v = (np.arange(64) + 0.5) / 64
    height = v * 3 - 2
    covered = table.covered.reshape(64, 64)[:, 32]
    expected = split.upper_weight(np.stack([np.zeros(64), height, np.zeros(64)], 1), neutral)
    assert np.abs(rows[covered] - expected[covered]).max() < 0.02
    assert rows[covered][0] < 0.01 and rows[covered][-1] > 0.99


def test_recombined_textures_take_each_region_from_its_donor():
    g = torch.Generator().manual_seed(0)
    tex = torch.randint(0, 256, (3, 3, 8, 8), generator=g, dtype=torch.uint8)
    valid = torch.ones(3, 8, 8, dtype=torch.bool)
    valid[1, :2] = False
    tw = torch.zeros(8, 8)
    tw[:4] = 1.0  # top half upper face
    rc = RecombinedTextures(np.array([[0, 1], [2, 0]]), torch.randn(2, 5), tw, per_batch=2)
    data = TrainData(tex, valid, torch.zeros(3, 5), np.arange(3), rc)
    out, v, w = rc.batch(data, np.array([0, 1]))
    assert torch.equal(out[0, :, :4], tex[0, :, :4].float() / 255) and torch.equal(out[0, :, 4:], tex[1, :, 4:].float() / 255)
    assert torch.equal(out[1, :, :4], tex[2, :, :4].float() / 255)
    assert v[0, :2].eq(1).all()  # the lower donor's unseen rows lie in the upper half: not used there
    assert torch.equal(w, rc.weights)


def test_draw_pairs_never_pairs_a_frame_with_itself():
    p = draw_pairs(np.array([3, 5, 9]), 200, seed=1)
    assert p.shape == (200, 2) and (p[:, 0] != p[:, 1]).all() and set(np.unique(p)) == {3, 5, 9}


# ------------------------------------------------------------------------------------ held-out blocks

def test_holdout_blocks_spread_over_the_clip_and_stay_inside_runs():
    # Kept frames 0-59 and 234-471 (a rejected stretch between), like the sample woman.
    kept = np.array(WOMAN_KEPT)
    video = np.zeros(472, int)
    frame = np.arange(472)
    blocks = holdout_blocks(kept, video, frame, 0.12, 3)
    assert len(blocks) == 3
    sizes = [len(b) for b in blocks]
    assert sum(sizes) == round(0.12 * len(kept)) and max(sizes) - min(sizes) <= 1
    for b in blocks:
        assert np.all(np.diff(b) == 1)  # contiguous frames: never across the rejected stretch
    centres = [np.searchsorted(kept, b.mean()) / len(kept) for b in blocks]
    assert np.allclose(centres, [1 / 6, 1 / 2, 5 / 6], atol=0.05)
    assert blocks[0].max() < 60 and blocks[1].min() > 234  # the crying and the laughing passage both held out


def test_holdout_blocks_respect_frame_step_and_videos():
    # Quick builds track every second frame; two takes of 36 tracked frames each.
    frame = np.r_[np.arange(0, 72, 2), np.arange(0, 72, 2)]
    video = np.r_[np.zeros(36, int), np.ones(36, int)]
    kept = np.arange(72)
    blocks = holdout_blocks(kept, video, frame, 0.2, 4, frame_step=2)
    assert len(blocks) == 4
    for b in blocks:
        assert len(set(video[b])) == 1 and np.all(np.diff(frame[b]) == 2)
    assert {int(video[b[0]]) for b in blocks} == {0, 1}


# ------------------------------------------------------------------------- training with recombination

def _correlated_clip(n: int, rng) -> tuple[np.ndarray, np.ndarray]:
    """Upper and lower face move together in every frame (eyes shut ⇔ mouth closed): features
    [upper (6), lower (6)] and a 2-d latent z = [upper state, lower state]."""
    state = np.sign(np.sin(np.arange(n) / 9.0))  # -1 crying, +1 laughing, long passages
    state = np.convolve(state, np.ones(5) / 5, "same")
    up_dir, lo_dir = rng.standard_normal(6), rng.standard_normal(6)
    feats = np.concatenate([state[:, None] * up_dir, state[:, None] * lo_dir], 1) + 0.02 * rng.standard_normal((n, 12))
    z = np.stack([state, state], 1)
    return feats.astype(np.float32), z.astype(np.float32), up_dir, lo_dir


def test_recombination_teaches_combinations_the_clip_never_shows():
    rng = np.random.default_rng(0)
    feats, z, up_dir, lo_dir = _correlated_clip(400, rng)
    cfg = AnimationConfig(pca_dim=0, steps=300, batch=32, window=4, seed=0)
    pairs = draw_pairs(np.arange(400), 512, seed=0)
    weight = np.r_[np.ones(6), np.zeros(6)].astype(np.float32)
    rz = np.stack([z[pairs[:, 0], 0], z[pairs[:, 1], 1]], 1)
    samples = RecombinedSamples(pairs, rz, weight, fraction=0.5, relaxed_z=np.zeros(2, np.float32), relaxed_per_batch=4)
    valid = np.ones(400, bool)
    plain, norm_p, _ = train_animation(feats, z, valid, cfg)
    mixed, norm_m, m = train_animation(feats, z, valid, cfg, recombined=samples)
    assert m["recombined_samples"] == 512

    def predict(net, norm, x):
        win = torch.from_numpy(norm.apply(np.repeat(x[None, None].astype(np.float32), 4, 1)))
        with torch.no_grad():
            return net(win)[0].numpy()

    eyes_open_mouth_closed = np.r_[up_dir, -lo_dir]  # upper "laughing", lower "crying": never seen
    want = np.array([1.0, -1.0])
    err_plain = np.abs(predict(plain, norm_p, eyes_open_mouth_closed) - want).max()
    err_mixed = np.abs(predict(mixed, norm_m, eyes_open_mouth_closed) - want).max()
    assert err_mixed < 0.35 and err_mixed < 0.5 * err_plain, (err_mixed, err_plain)
    # A relaxed driver (features 0) gets the relaxed latent it was anchored to.
    assert np.abs(predict(mixed, norm_m, np.zeros(12))).max() < 0.2


def test_recombined_samples_are_checked():
    feats, z, _, _ = _correlated_clip(50, np.random.default_rng(1))
    bad = RecombinedSamples(np.zeros((4, 2), np.int64), np.zeros((3, 2), np.float32), np.ones(12, np.float32))
    with pytest.raises(ValueError, match="do not match"):
        train_animation(feats, z, np.ones(50, bool), AnimationConfig(pca_dim=0, steps=2), recombined=bad)
