"""Closed-loop expression transfer on a real --quick avatar: the other sample person drives it,
the runtime's renderer draws it headless, the same tracker reads the expression back."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tools import cli
from tools.samples import sample_path

from _avatar_quick import quick_build


@pytest.fixture(scope="module")
def quick_avatar(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


def test_cross_identity_transfer_on_quick_avatar(quick_avatar, tmp_path):
    out, video = tmp_path / "transfer.json", tmp_path / "side_by_side.mp4"
    rc = cli.main(["eval", "transfer", "--avatar", str(quick_avatar), "--driver", str(sample_path("single_face.mp4")),
                   "--json", str(out), "--video", str(video)])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["driver_face_found_fraction"] == 1.0
    # Thresholds the quick build (64² texture, short training) meets; full-build numbers are in
    # docs/BENCHMARKS.md. The man's smile and open mouth must come through on the woman's avatar,
    # without delay — and while he is relaxed her avatar's mouth must be closed, not half a laugh.
    assert r["avatar_face_found_fraction"] >= QUICK_FACE_FOUND
    for name in ("smile_width", "mouth_open"):
        s = r["signals"][name]
        assert s["pearson_r"] >= QUICK_CROSS_R[name], (name, s)
        assert s["lag_frames"] is not None and abs(s["lag_frames"]) <= 1, (name, s)
    series = r["series"]
    relaxed = [a for f, a in zip(series["frame"], series["avatar"]["mouth_open"]) if f < 16 and a is not None]
    smiling = [a for f, a in zip(series["frame"], series["avatar"]["mouth_open"]) if f >= 28 and a is not None]
    assert np.median(relaxed) < 0.08 and np.median(smiling) > 2.5 * np.median(relaxed), (relaxed, smiling)
    assert len(series["frame"]) == r["scored_frames"] == 72
    cap = cv2.VideoCapture(str(video))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == r["frames"][1] - r["frames"][0]
    ok, frame = cap.read()
    assert ok and frame.shape[1] > frame.shape[0]  # driver | avatar
    cap.release()


def test_self_reenactment_on_the_held_out_blocks(quick_avatar, tmp_path):
    """Her own held-out frames (three blocks spread over the clip: crying with eyes shut, laughing,
    eyes closing), measured against her relaxed face as in training: mouth and eyes must follow."""
    out = tmp_path / "self.json"
    rc = cli.main(["eval", "transfer", "--avatar", str(quick_avatar), "--driver", str(sample_path(WOMAN)),
                   "--holdout", "--json", str(out)])
    assert rc == 0
    r = json.loads(out.read_text())
    raw = json.loads((quick_avatar / "avatar.json").read_text())
    blocks = raw["build"]["holdout_frame_ranges"]
    assert len(r["ranges"]) == len(blocks) == 3
    for (lo, hi), (tag_lo, tag_hi) in zip(r["ranges"], blocks):
        assert lo == int(tag_lo.split("frame")[1]) and hi == int(tag_hi.split("frame")[1]) + 1
    # Quick builds track every second frame; the evaluation drives every video frame of each block.
    assert r["scored_frames"] >= raw["metrics"]["holdout_frames"]
    for name, goal in QUICK_SELF_R.items():
        s = r["signals"][name]
        assert s["pearson_r"] >= goal, (name, s)
        # None: no motion within the blocks to time (her mouth holds still inside each block).
        assert s["lag_frames"] is None or abs(s["lag_frames"]) <= QUICK_SELF_MAX_LAG, (name, s)


def test_the_named_space_costs_little_and_keeps_the_jaw_upright(quick_avatar, tmp_path):
    """Issue 16's cost of the indirection, in one run per driver: through expr52 (and Live Link's
    bytes) mouth and smile stay within 0.05 of the direct path, on the man and on her held-out
    frames. The man's jaw_open through the named space was inverted (r −0.67 against +0.76 direct)
    until the kind map kept the upper lip's weights off the chin; it measured −0.05 after. It is not
    asked to match direct: on his clip that signal (nose tip to chin) follows his nose tip, which his
    grin lifts 0.12 interocular units (r 0.95), while his chin holds still against his eyes (r −0.10),
    and no ARKit weight carries the nose tip. Held to "not inverted" here, and to within 0.05 of
    direct where the jaw really opens (her held-out frames: 0.91 against 0.89 direct)."""
    for driver, extra, signals in (("single_face.mp4", [], ("mouth_open", "smile_width")),
                                   (WOMAN, ["--holdout"], ("mouth_open", "smile_width", "jaw_open"))):
        out = tmp_path / f"via-{driver}.json"
        rc = cli.main(["eval", "transfer", "--avatar", str(quick_avatar), "--driver", str(sample_path(driver)),
                       *extra, "--via", "mp478,expr52,livelink", "--json", str(out)])
        assert rc == 0
        cmp = json.loads(out.read_text())["comparison"]
        for name in signals:
            for via in ("expr52", "livelink"):
                assert cmp[name][via]["delta"] >= -0.05, (driver, name, cmp[name])
        if driver == "single_face.mp4":
            assert cmp["jaw_open"]["expr52"]["r"] > -0.3, cmp["jaw_open"]


def test_holdout_needs_the_avatars_own_clip(quick_avatar, tmp_path, capsys):
    rc = cli.main(["eval", "transfer", "--avatar", str(quick_avatar), "--driver", str(sample_path("single_face.mp4")),
                   "--holdout", "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "not one of the clips" in capsys.readouterr().err


def test_package_without_animation_is_refused(quick_avatar, tmp_path, capsys):
    rc = cli.main(["eval", "transfer", "--avatar", str(tmp_path), "--driver", str(sample_path("single_face.mp4")),
                   "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "avatar" in capsys.readouterr().err.lower()


def test_no_face_driver_is_a_clear_error(quick_avatar, tmp_path, capsys):
    rc = cli.main(["eval", "transfer", "--avatar", str(quick_avatar), "--driver", str(sample_path("no_face.mp4")),
                   "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "driver clip: no face" in capsys.readouterr().err


QUICK_FACE_FOUND = 0.9
# The targets; the quick build measured smile 0.98, mouth 0.94-0.95 (lag 1) over 4 seeds.
QUICK_CROSS_R = {"smile_width": 0.8, "mouth_open": 0.8}
# Issue targets mouth 0.9, eyes 0.8; the quick build measured mouth 0.94-1.00, right eye 0.95-0.98,
# left eye 0.79-0.86 over 4 seeds, hence 0.75 for the eyes here (full builds: docs/BENCHMARKS.md).
QUICK_SELF_R = {"mouth_open": 0.9, "eye_open_right": 0.75, "eye_open_left": 0.75}
# The quick avatar's left eye starts to close ~2 frames before hers in the last block (measured -2;
# right eye 0): its 64² texture and 16-d latent blur the lids. Full builds: docs/BENCHMARKS.md.
QUICK_SELF_MAX_LAG = 2
WOMAN = "WolfgangLanger_Pexels.mp4"
