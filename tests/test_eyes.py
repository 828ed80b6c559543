"""Issue 13: eyes, blinks, gaze, stillness and a neutral that does not depend on the first second.

The parts on real data (the sample man's tracked landmarks, the quick avatar's mesh); the closed
loop — man drives the woman's quick avatar, the renderer draws it, the tracker reads it back — is
in the second half (blink, wink, gaze sweep, stillness, start-with-a-smile)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from _avatar_quick import quick_build

from calibration.expression_range import ExpressionRange
from calibration.neutral import NeutralFace
from calibration.online_neutral import OnlineNeutralConfig, OnlineNeutralEstimator, shape_signals
from capture.smoothing import RegionSmoother
from geometry.facemesh_eyes import EYES, eyes_from_features, lid_gap
from inference.features.mp478 import Mp478Extractor
from tools import cli
from tools.samples import sample_path

MAN = "single_face.mp4"


@pytest.fixture(scope="module")
def man_canon():
    import cv2

    from inference.features.face_tracker import FaceTracker

    cap = cv2.VideoCapture(str(sample_path(MAN)))
    ex = Mp478Extractor()
    out = []
    with FaceTracker() as tracker:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            obs = tracker.track(img)
            assert obs is not None
            out.append(ex.canonical(obs.landmarks_px)[0])
    cap.release()
    assert len(out) == 72
    return out


def _mouth(c):
    gap, width = shape_signals(c)[:2]
    return float(gap), float(width)


# -- the online neutral ---------------------------------------------------------------------------

@pytest.mark.parametrize("fps", [15.0, 30.0, 60.0])
def test_neutral_settles_after_the_same_seconds_at_any_frame_rate(man_canon, fps):
    est = OnlineNeutralEstimator(OnlineNeutralConfig(settle_s=0.5))
    settled_at = None
    for i in range(int(2 * fps)):
        est.update(man_canon[min(int(i * 30 / fps), 16)], i / fps)  # his relaxed stretch, resampled
        if est.converged and settled_at is None:
            settled_at = i / fps
    assert settled_at is not None and 0.45 <= settled_at <= 0.55 + 1 / fps, settled_at


def test_driver_who_smiles_from_the_first_frame_gets_his_relaxed_neutral_once_he_relaxes(man_canon):
    """He smiles (frames 20-68) from his first frame, relaxes (0-16), smiles again: the neutral
    starts as his smile (nothing better was seen), improves to the relaxed face, and the second
    smile does not take it back."""
    est = OnlineNeutralEstimator()
    order = list(range(20, 69)) + list(range(0, 17)) + list(range(20, 69)) * 3
    history = []
    for k, i in enumerate(order):
        est.update(man_canon[i], k / 30)
        history.append(_mouth(est.estimate.canonical))
    relaxed_gap, relaxed_width = _mouth(np.median(np.array(man_canon[:17]), axis=0))
    smile_gap = _mouth(man_canon[40])[0]
    # during the first smile a smile is all it has seen: its width is the smile's, but the
    # closed-lips prior has shut the lips it holds apart
    assert history[45][1] > relaxed_width + 0.2 and history[45][0] < 0.03 < 0.5 * smile_gap, history[45]
    gap, width = history[-1]
    assert gap < relaxed_gap + 0.02 and width < relaxed_width + 0.03, (history[-1], relaxed_gap, relaxed_width)
    assert est.improved >= 1


# -- per-driver range -----------------------------------------------------------------------------

def _closed(c, side, share):
    """c with one eye's lids brought together by ``share`` of their gap."""
    out = np.array(c, np.float32, copy=True)
    upper, lower, _, _ = EYES[side]
    for u, lo in zip(upper, lower):
        out[u] = c[u] + share * (c[lo] - c[u])
    return out


def test_a_driver_whose_lids_only_close_halfway_still_closes_the_avatars_eyes(man_canon):
    neutral = np.median(np.array(man_canon[:17]), axis=0)
    rng = ExpressionRange()
    for k in range(120):  # 4 s: open, with a "blink" that only reaches 70 % every second
        c = _closed(neutral, "right", 0.7) if k % 30 in (10, 11, 12) else neutral
        c = _closed(c, "left", 0.7) if k % 30 in (10, 11, 12) else c
        rng.update(c, neutral, k / 30)
    assert 0.6 <= rng.ranges["eye_close_right"] <= 0.75 and rng.learned["eye_close_right"]
    feats = rng.apply(5.0 * (_closed(_closed(neutral, "right", 0.7), "left", 0.7) - neutral))
    closure, _ = eyes_from_features(feats, 5.0)
    assert closure.min() > 0.95, closure
    # one outlier frame (a hand, a tracker glitch) does not move a 98th percentile
    wild = neutral.copy()
    wild[14, 1] -= 2.0
    before = rng.ranges["mouth_open"]
    rng.update(wild, neutral, 4.1)
    rng._learn()
    assert rng.ranges["mouth_open"] == before


def test_the_range_is_saved_with_the_neutral(tmp_path, man_canon):
    n = NeutralFace(man_canon[0], 10, 5, ranges={"eye_close_right": 0.7, "smile": 0.2})
    back = NeutralFace.load(n.save(tmp_path / "n.npz"))
    assert back.ranges == {"eye_close_right": 0.7, "smile": 0.2}
    assert ExpressionRange(ranges=back.ranges).ranges["eye_close_right"] == 0.7


# -- stillness --------------------------------------------------------------------------------------

def test_smoothing_holds_a_still_face_still_and_lets_a_blink_through_in_one_frame(man_canon):
    rng = np.random.default_rng(0)
    base = np.median(np.array(man_canon[:17]), axis=0)
    upper = list(EYES["right"][0])
    for fps in (15.0, 30.0, 60.0):
        sm = RegionSmoother()
        raw, out = [], []
        for k in range(int(fps)):
            c = base + rng.normal(0, 0.004, base.shape).astype(np.float32)
            raw.append(c)
            out.append(sm(c, k / fps))
        jit = lambda xs, pts: float(np.sqrt(np.mean(np.diff(np.array(xs)[:, pts], axis=0) ** 2)))  # noqa: E731
        assert jit(out, list(range(0, 468))) < 0.5 * jit(raw, list(range(0, 468))), fps
        shut = _closed(base, "right", 1.0)
        y = sm(shut, 1.0)  # one frame later the lids are closed
        g0, g1 = lid_gap(base, EYES["right"][0], EYES["right"][1]), lid_gap(y, EYES["right"][0], EYES["right"][1])
        assert g1 < 0.3 * g0, (fps, g0, g1)
        assert np.abs(y[upper] - shut[upper]).max() < 0.3 * g0


# -- closed loop on the quick avatar ---------------------------------------------------------------

@pytest.fixture(scope="module")
def quick_avatar(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


def _eval(avatar, tmp_path, *extra):
    out = tmp_path / "eval.json"
    rc = cli.main(["eval", "transfer", "--avatar", str(avatar), "--driver", str(sample_path(MAN)),
                   "--json", str(out), *extra])
    assert rc == 0
    return json.loads(out.read_text())


def test_eyelid_rig_closes_each_eye_on_its_own(quick_avatar):
    from inference.avatar_package import AvatarPackage
    from xr_runtime.avatars.eyelids import EyelidRig
    from xr_runtime.avatars.mesh import AvatarMeshData

    m = AvatarPackage.load(quick_avatar).mesh
    rig = EyelidRig.for_mesh(AvatarMeshData(m.positions, m.uvs, m.indices, m.blendshapes))
    assert rig is not None and rig.mesh.blendshape_count == m.blendshapes.shape[0] + 2
    w0 = np.zeros(rig.base_count, np.float32)
    lids = rig.lid_weights(w0, np.array([1.0, 0.0]))  # a right wink
    p = rig.mesh.deformed_positions(np.r_[w0, lids])
    right = lid_gap(p, *EYES["right"][:2]) / np.linalg.norm(p[33] - p[133])
    left = lid_gap(p, *EYES["left"][:2]) / np.linalg.norm(p[263] - p[362])
    assert abs(right) < 0.01 and 0.25 < left < 0.35, (right, left)


def test_blinks_and_stillness_arrive_on_the_avatar(quick_avatar, tmp_path):
    r = _eval(quick_avatar, tmp_path)
    eyes = r["eyes"]
    for side in ("right", "left"):
        b = eyes[f"blinks_{side}"]
        assert b["driver_blinks"] >= 1 and b["recall"] == 1.0 and b["max_lag_frames"] <= 1, (side, b)
        assert r["signals"][f"eye_open_{side}"]["pearson_r"] >= 0.8, side
    # quick avatar measured 0.032-0.036 against his 0.036 (smoothing off: 0.048)
    assert r["jitter_still_avatar"] <= 1.05 * r["jitter_still_driver"], (r["jitter_still_avatar"], r["jitter_still_driver"])
    for name in ("mouth_open", "smile_width"):
        assert r["signals"][name]["pearson_r"] >= 0.9, name


@pytest.mark.parametrize("side", ["right", "left"])
def test_a_wink_closes_only_that_eye(quick_avatar, tmp_path, side):
    w = _eval(quick_avatar, tmp_path, "--edit", f"wink-{side}")["eyes"]["wink"]
    assert w["eye"] == side
    wink_event = w["closed_eye"]["events"][0]
    assert wink_event["avatar_shut"] and abs(wink_event["lag_frames"]) <= 1, w
    assert w["other_eye_ok"] and w["other_eye_drop"] <= 0.2, w


def test_the_avatar_looks_where_the_driver_looks(quick_avatar, tmp_path):
    eyes = _eval(quick_avatar, tmp_path, "--edit", "gaze-sweep")["eyes"]
    # measured 0.86 / 0.89 on the quick avatar (64² texture: the iris is 2-3 texels wide)
    assert eyes["gaze_x"]["pearson_r"] >= 0.75 and eyes["gaze_y"]["pearson_r"] >= 0.75, eyes


def test_start_with_a_smile_never_inverts(quick_avatar, tmp_path):
    """He smiles from his first frame, relaxes, smiles again: the avatar must never do the opposite
    (the old first-30-frames neutral measured mouth r −0.85 on such a start), and once he has
    relaxed it must follow him again."""
    r = _eval(quick_avatar, tmp_path, "--edit", "smile-start")
    for name in ("mouth_open", "smile_width"):
        assert r["signals"][name]["pearson_r"] > 0.2, (name, r["signals"][name])
    s = r["series"]
    d, a = np.array(s["driver"]["mouth_open"], float), np.array(s["avatar"]["mouth_open"], float)
    second = slice(70, None)  # after his relaxed stretch: the second smile
    assert np.corrcoef(d[second], a[second])[0, 1] >= 0.8  # measured 0.88
    relaxed = slice(52, 68)
    assert np.nanmedian(a[relaxed]) < 0.08  # while he is relaxed her mouth is closed, not inverted


# -- the capture node: saved calibration, and what `headcast listen` shows ------------------------

def test_capture_saves_the_learned_range_and_listen_shows_the_eyes(tmp_path):
    from capture.node import CaptureConfig, CaptureNode
    from capture.sources import SourceConfig
    from streaming.receiver import Receiver, ReceiverConfig
    from streaming.stream_table import collect, format_table

    saved = tmp_path / "me.npz"
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=128)) as rx:
        node = CaptureNode(CaptureConfig(SourceConfig(str(sample_path(MAN))), rx.bound_endpoint, "man",
                                         save_neutral=saved))
        node.run()
        assert rx.wait_for(lambda r: "man" in r.snapshot() and r.snapshot()["man"].end_of_stream, 5)
        frames = rx.window("man", 128)[:-1]
        stats = collect(rx, 4)
    # his blink (frames 26-28) arrives shut on the range-normalised stream, his open eyes open
    closure = np.array([eyes_from_features(f.features, 5.0)[0] for f in frames])
    assert closure[26:29].max(0).min() > 0.8 and np.abs(closure[5:17]).max() < 0.25, closure[20:32]
    eyes = stats["streams"]["man"]["eyes"]
    assert len(eyes["closure"]) == 2 and len(eyes["gaze"]) == 2
    assert "eyes R/L shut, gaze" in format_table(stats)
    calib = NeutralFace.load(saved)
    assert {"eye_close_right", "eye_close_left", "smile"} <= set(calib.ranges), calib.ranges
    assert 0.6 < calib.ranges["eye_close_right"] <= 1.2


def test_the_render_nodes_sampler_carries_the_newest_eyes_faded_with_presence():
    from inference.engine.eye_state import EyeState
    from xr_runtime.avatars.sampler import AvatarSampler, SamplerConfig
    from xr_runtime.avatars.state import AvatarFrameState

    tex = np.zeros((4, 4, 4), np.uint8)
    s = AvatarSampler(tex, np.zeros(2, np.float32), SamplerConfig(fade_s=0.2))
    shut = EyeState(np.array([1.0, 0.0], np.float32), np.array([[0.3, 0.0], [0.3, 0.0]], np.float32))
    opened = EyeState.relaxed()
    s.observe(AvatarFrameState(tex, np.zeros(2, np.float32), t_state_ns=0, texture_serial=1, eyes=opened), 0)
    s.observe(AvatarFrameState(tex, np.zeros(2, np.float32), t_state_ns=33_000_000, texture_serial=2, eyes=shut), 33_000_000)
    s.sample(40_000_000)
    look = s.sample(500_000_000)  # faded in fully; a blink is never interpolated with the open state
    assert look.fade == 1.0 and look.eyes.closure.tolist() == [1.0, 0.0] and look.eyes.gaze[0, 0] == pytest.approx(0.3)
    s.observe(AvatarFrameState(tex, np.zeros(2, np.float32), presence=0.0, t_state_ns=66_000_000, texture_serial=3,
                               eyes=shut), 550_000_000)
    s.sample(550_000_000)
    half = s.sample(600_000_000)
    assert 0.0 < half.fade < 1.0 and half.eyes.closure[0] == pytest.approx(half.fade)
