"""Glass to glass (issue 14): the optical frame counter drawn by a real headless render node, read
back off its frames, and the whole loop closed through a capture node without a camera."""
from __future__ import annotations

import json
import subprocess
import sys

import cv2
import pytest

from media.optical_marker import MarkerDetector, join_loop, marker_image

HEADCAST = [sys.executable, "-m", "tools.cli"]

pytestmark = pytest.mark.usefixtures("egl_available")


def test_the_counter_round_trips_through_an_image_and_resolves_repeats():
    detector = MarkerDetector()
    for index in (0, 7, 999, 1000, 123456):
        image = cv2.copyMakeBorder(marker_image(index, 6), 40, 40, 60, 20, cv2.BORDER_CONSTANT, value=90)
        assert detector.detect(image) == index % 1000
    # Ids repeat every 1000 frames: an id resolves to the newest frame shown before the camera saw it.
    shown = [(5, 100), (1005, 2_000), (2005, 5_000)]
    samples = join_loop(shown, [(1, 2_500, 5), (2, 200, 5), (3, 2_500, 6)], {1: 3_000, 2: 400, 3: 9})
    assert [(s.seq, s.marker_frame) for s in samples] == [(1, 1005), (2, 5)]
    assert samples[0].loop_ms == pytest.approx((3_000 - 2_000) / 1e6)
    assert samples[0].display_to_camera_ms + samples[0].camera_to_display_ms == pytest.approx(samples[0].loop_ms)


def test_the_render_node_draws_its_frame_index(tmp_path):
    r = subprocess.run(HEADCAST + ["render", "--avatar", str(tmp_path / "a"), "--dev-avatars", "--backend", "headless",
                                   "--frames", "12", "--bind", "tcp://127.0.0.1:0", "--clock-bind", "off",
                                   "--optical-marker", "--size", "320x240", "--out", str(tmp_path / "png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    detector = MarkerDetector()
    frames = sorted((tmp_path / "png").glob("*.png"))
    assert len(frames) == 12
    assert [detector.detect(cv2.imread(str(p))) for p in frames] == list(range(12))


def test_the_loop_closes_without_a_camera(tmp_path_factory):
    from _avatar_quick import quick_build

    avatar = quick_build(tmp_path_factory.getbasetemp())
    out = tmp_path_factory.mktemp("glass")
    r = subprocess.run(HEADCAST + ["bench", "glass", "--seconds", "8", "--avatar", str(avatar), "--json",
                                   str(out / "glass.json"), "--out", str(out / "run")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (r.stdout[-2000:], r.stderr[-2000:])
    result = json.loads((out / "glass.json").read_text())
    # The fed-back frames carry the marker and the avatar's face: the capture node reads most
    # markers, and its frames' animation reaches the display, so loops close by the tens.
    assert result["loops"] >= 20 and result["markers_read"] >= 0.5 * result["capture"]["frames"]
    loop, optics, chain = result["loop_ms"], result["display_to_camera_ms"], result["camera_to_display_ms"]
    assert 0 < optics["p50"] < loop["p50"] and 0 < chain["p50"] < loop["p50"]
    assert loop["p50"] < 1000
    assert result["stages_ms_of_looped_frames"]["end_to_end"]["p50"] == pytest.approx(chain["p50"], abs=0.5)
