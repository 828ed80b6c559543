"""mp478 features, expression signals and neutral calibration on the real sample clips.

The two sample people: the woman (WolfgangLanger_Pexels.mp4; eyes closed in frames ~0-50 and
~445-470, near-neutral ~228-246, open smiles ~300-340) and the man (single_face.mp4; neutral
0-20, smiling 24-71).
"""
from __future__ import annotations

import numpy as np
import pytest

from calibration.neutral import NeutralError, NeutralFace, estimate_neutral
from calibration.online_neutral import OnlineNeutralConfig, OnlineNeutralEstimator
from capture.sources import SourceConfig, open_source
from geometry.rotations import quaternion_to_rotation
from inference.features.expression_signals import compute_signals, signal_deltas
from inference.features.face_tracker import FaceTracker
from inference.features.mp478 import FEATURE_GAIN, Mp478Extractor, head_pose
from tools.samples import sample_path

WOMAN, MAN = "WolfgangLanger_Pexels.mp4", "single_face.mp4"
WOMAN_NEUTRAL = range(228, 247)
WOMAN_SMILE = range(300, 341)
WOMAN_EYES_CLOSED = list(range(20, 50)) + list(range(448, 470))
WOMAN_EYES_OPEN = range(160, 241)
MAN_NEUTRAL = range(0, 21)
MAN_SMILE = range(28, 66)
MOUTH = [13, 14, 61, 291, 0, 17, 78, 308, 81, 311, 178, 402]


def _track(name: str, max_frames: int | None = None) -> list[np.ndarray]:
    out = []
    with open_source(SourceConfig(str(sample_path(name)), max_frames=max_frames)) as src, FaceTracker() as tr:
        for frame in src:
            obs = tr.track(frame.image)
            assert obs is not None, f"no face in frame {frame.index} of {name}"
            out.append(obs.landmarks_px)
    return out


@pytest.fixture(scope="module")
def woman() -> list[np.ndarray]:
    return _track(WOMAN)


@pytest.fixture(scope="module")
def man() -> list[np.ndarray]:
    return _track(MAN)


def _features(landmarks: list[np.ndarray], neutral_frames) -> tuple[np.ndarray, np.ndarray, NeutralFace]:
    """(features (N,478,3), canonical (N,478,3), neutral) with the neutral from the given frames."""
    ex = Mp478Extractor()
    first = [ex.canonical(landmarks[i])[0] for i in neutral_frames]
    neutral = estimate_neutral(first)
    ex.neutral = neutral.canonical
    res = [ex.extract(lm) for lm in landmarks]
    return np.stack([r.features for r in res]), np.stack([r.canonical for r in res]), neutral


def test_features_shape_finite_and_scaled(man):
    feats, canon, neutral = _features(man, MAN_NEUTRAL)
    assert feats.shape == (72, 478, 3) and feats.dtype == np.float32
    assert np.isfinite(feats).all()
    # canonical frame: interocular distance 1 (eye-corner centres)
    c = canon[0]
    iod = np.linalg.norm(c[[263, 362]].mean(0) - c[[33, 133]].mean(0))
    assert iod == pytest.approx(1.0, abs=0.03)
    # the fixed gain makes expressions O(1): a smile moves the mouth by 0.3-3 feature units
    smile_mouth = np.abs(feats[list(MAN_SMILE)][:, MOUTH]).max(axis=(1, 2))
    assert 0.3 < np.median(smile_mouth) < 3.0
    np.testing.assert_allclose(feats, FEATURE_GAIN * (canon - neutral.canonical), atol=1e-4)


def test_features_are_person_independent_ish(woman, man):
    fw, cw, nw = _features(woman, WOMAN_NEUTRAL)
    fm, cm, nm = _features(man, MAN_NEUTRAL)
    rms = lambda f: float(np.sqrt((f ** 2).sum(-1).mean()))  # noqa: E731
    neutral_w = np.median([rms(fw[i]) for i in WOMAN_NEUTRAL])
    neutral_m = np.median([rms(fm[i]) for i in MAN_NEUTRAL])
    smile_w = np.median([rms(fw[i]) for i in WOMAN_SMILE])
    smile_m = np.median([rms(fm[i]) for i in MAN_SMILE])
    # own-neutral subtraction: neutral frames of both people are near zero, smiles are not
    assert neutral_w < 0.35 * smile_w and neutral_m < 0.35 * smile_m, (neutral_w, smile_w, neutral_m, smile_m)
    # identity is large before subtraction: the two neutral faces differ more than a neutral frame
    # differs from its own person's neutral
    identity = rms(FEATURE_GAIN * (nw.canonical - nm.canonical))
    assert identity > 2 * max(neutral_w, neutral_m), (identity, neutral_w, neutral_m)
    # the same expression points the same way for both people (mouth region, mean smile feature).
    # Image-plane components only: FaceMesh's depth is a weak monocular guess, and the two smiles
    # disagree there (measured cosine in z ≈ -0.56, in x/y ≈ 0.72).
    a = fw[list(WOMAN_SMILE)][:, MOUTH, :2].mean(0).ravel()
    b = fm[list(MAN_SMILE)][:, MOUTH, :2].mean(0).ravel()
    cos = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
    assert cos > 0.5, cos


def test_eye_closure_survives_in_features(woman):
    feats, canon, neutral = _features(woman, WOMAN_NEUTRAL)
    # the lid gap of both eyes, read straight from the features (upper lid y - lower lid y)
    gap = lambda f: (f[159, 1] - f[145, 1]) + (f[386, 1] - f[374, 1])  # noqa: E731
    closed = np.array([gap(feats[i]) for i in WOMAN_EYES_CLOSED])
    opened = np.array([gap(feats[i]) for i in WOMAN_EYES_OPEN])
    assert np.median(closed) < -0.3, np.median(closed)  # lids came together by > 0.06 IOD
    assert np.median(opened) > -0.1, np.median(opened)  # open (160-240 she looks up: wider than neutral)
    assert np.median(opened) - np.median(closed) > 0.3
    # the same in the interpretable signals
    sig_closed = [compute_signals(canon[i]) for i in WOMAN_EYES_CLOSED]
    sig_open = [compute_signals(canon[i]) for i in WOMAN_EYES_OPEN]
    assert np.median([s.eye_open_left + s.eye_open_right for s in sig_closed]) < 0.15
    assert np.median([s.eye_open_left + s.eye_open_right for s in sig_open]) > 0.4
    # the iris points are present and sit inside their eyes while the eyes are open
    c = canon[200]
    assert np.linalg.norm(c[468, :2] - c[[33, 133], :2].mean(0)) < 0.2
    assert np.linalg.norm(c[473, :2] - c[[263, 362], :2].mean(0)) < 0.2


def test_expression_signals_on_the_man(man):
    _, canon, neutral = _features(man, MAN_NEUTRAL)
    smile = np.median([signal_deltas(canon[i], neutral.canonical).smile_width for i in MAN_SMILE])
    calm = np.median([abs(signal_deltas(canon[i], neutral.canonical).smile_width) for i in MAN_NEUTRAL])
    assert smile > 0.2 and calm < 0.05, (smile, calm)
    mouth = np.median([signal_deltas(canon[i], neutral.canonical).mouth_open for i in MAN_SMILE])
    assert mouth > 0.1  # he smiles with his teeth showing
    assert set(compute_signals(canon[0]).as_dict()) == {
        "mouth_open", "jaw_open", "smile_width", "eye_open_right", "eye_open_left", "brow_raise"}


def test_head_pose_is_plausible(man):
    ex = Mp478Extractor()
    for lm in man[::10]:
        res = ex.extract(lm)
        pose = head_pose(res.pose)
        r = quaternion_to_rotation(pose.rotation)
        # frontal face in OpenCV camera axes = 180° about x; allow 30° of head turn
        frontal = np.diag([1.0, -1.0, -1.0])
        angle = np.degrees(np.arccos(np.clip((np.trace(frontal.T @ r) - 1) / 2, -1, 1)))
        assert angle < 30, angle
        assert 30 < pose.scale < 200  # interocular distance in pixels for a 640x360 head shot
        assert 0 < pose.translation[0] < 640 and 0 < pose.translation[1] < 360
        # the pose maps the canonical shape back onto the tracked pixels
        back = res.pose.apply(res.canonical)
        assert np.abs(back[:, :2] - lm[:, :2]).max() < 1.0


def test_neutral_estimate_is_robust_to_some_expression(man):
    ex = Mp478Extractor()
    canon = [ex.canonical(lm)[0] for lm in man]
    clean = estimate_neutral([canon[i] for i in MAN_NEUTRAL])
    mixed = estimate_neutral([canon[i] for i in list(MAN_NEUTRAL) + list(range(30, 38))])  # 21 calm + 8 smiling
    naive = np.mean([canon[i] for i in list(MAN_NEUTRAL) + list(range(30, 38))], axis=0)
    err_robust = np.abs(mixed.canonical - clean.canonical)[MOUTH].max()
    err_naive = np.abs(naive - clean.canonical)[MOUTH].max()
    assert err_robust < 0.02 and err_robust < 0.5 * err_naive, (err_robust, err_naive)
    with pytest.raises(NeutralError, match="only 3 frames"):
        estimate_neutral(canon[:3])


def test_neutral_file_roundtrip_and_bad_files(tmp_path, man):
    ex = Mp478Extractor()
    n = estimate_neutral([ex.canonical(man[i])[0] for i in MAN_NEUTRAL], source="single_face.mp4")
    path = n.save(tmp_path / "sub" / "me.npz")
    back = NeutralFace.load(path)
    np.testing.assert_array_equal(back.canonical, n.canonical)
    assert (back.frames_used, back.frames_seen, back.source) == (n.frames_used, n.frames_seen, "single_face.mp4")
    assert [p.name for p in path.parent.iterdir()] == ["me.npz"]  # no temp file left behind
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(NeutralError, match="not a readable neutral"):
        NeutralFace.load(bad)
    with pytest.raises(NeutralError, match="does not exist"):
        NeutralFace.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "pickled.npz", canonical=np.array([object()], dtype=object))
    with pytest.raises(NeutralError):
        NeutralFace.load(tmp_path / "pickled.npz")  # allow_pickle=False: never executes a pickle


def test_online_estimator_settles_in_time_then_never_absorbs_a_held_smile(man):
    ex = Mp478Extractor()
    canon = [ex.canonical(lm)[0] for lm in man]
    est = OnlineNeutralEstimator(OnlineNeutralConfig(settle_s=0.5))
    states = []
    for i, c in enumerate(canon[:17]):  # his relaxed stretch, 30 fps
        est.update(c, i / 30)
        states.append(est.converged)
    assert not states[0] and states[-1] and states.index(True) == 15, states  # 0.5 s of face
    settled = est.estimate.canonical.copy()
    # 30 s of his smile afterwards (frames 30-65 again and again) must not leak into the neutral
    t = 17 / 30
    for _ in range(30):
        for c in canon[30:60]:
            t += 1 / 30
            est.update(c, t)
    assert np.abs(est.estimate.canonical - settled)[MOUTH].max() < 0.01
    # and what settled is his relaxed face: lips closed, mouth as narrow as in his calm frames
    from calibration.online_neutral import shape_signals

    gap, width = shape_signals(settled)[:2]
    calm = shape_signals(np.array(canon[:17]))
    assert gap < 0.04 and width <= np.median(calm[:, 1]) + 0.01, (gap, width)


def test_degenerate_landmarks_raise_value_error_not_nan(man):
    ex = Mp478Extractor()
    for bad in (np.zeros((478, 3), np.float32), np.full((478, 3), np.nan, np.float32), np.ones((5, 3))):
        with pytest.raises(ValueError):
            ex.extract(bad)
    collinear = man[0].copy()
    collinear[:, 1] = 100.0  # every point on one image row: no up direction
    collinear[:, 2] = 0.0
    with pytest.raises(ValueError):
        ex.extract(collinear)
