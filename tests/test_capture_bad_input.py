"""Bad input on the capture side: each case is a clear error or a counted, flagged frame; never a
crash or a hang."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from capture.node import CaptureConfig, CaptureNode
from capture.sources import LatestFrameGrabber, SourceConfig, SourceError, open_source
from streaming.protocol import FeatureKind, Flags
from tools import cli
from tools.samples import sample_path
from streaming.receiver import Receiver, ReceiverConfig

MAN, WOMAN, NO_FACE = "single_face.mp4", "WolfgangLanger_Pexels.mp4", "no_face.mp4"


def _capture(argv_tail: list[str], capsys) -> tuple[int, str]:
    rc = cli.main(["capture", "--connect", "tcp://127.0.0.1:9", "--stream", "bad", *argv_tail])
    return rc, capsys.readouterr().err


def test_no_face_clip_sends_face_lost_frames(capsys):
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        stats = CaptureNode(CaptureConfig(SourceConfig(str(sample_path(NO_FACE)), max_frames=20),
                                          rx.bound_endpoint, "empty")).run()
        assert rx.wait_for(lambda r: "empty" in r.snapshot() and r.snapshot()["empty"].end_of_stream, 5)
        frames = rx.window("empty", 64)
    assert (stats.frames, stats.face_lost, stats.face_frames) == (20, 20, 0)
    assert len(frames) == 21 and frames[-1].end_of_stream
    for f in frames[:-1]:
        assert f.flags == Flags.FACE_LOST and f.kind is FeatureKind.MP478
        assert f.features.shape == (478, 3) and not f.features.any() and f.confidence == 0.0


def test_truncated_video_is_a_clear_error_after_what_it_could_send(tmp_path, capsys):
    data = sample_path(WOMAN).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[:400_000])  # index at the front, frames missing at the end
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=256)) as rx:
        rc = cli.main(["capture", "--source", str(cut), "--connect", rx.bound_endpoint, "--stream", "cut"])
        err = capsys.readouterr().err
        assert rx.wait_for(lambda r: "cut" in r.snapshot() and r.snapshot()["cut"].end_of_stream, 5)
        st = rx.snapshot()["cut"]
    assert rc == 2
    assert "truncated or corrupt" in err and "of 472 frames" in err
    assert 0 < st.received < 472  # the frames it had went out, then an end-of-stream frame


def test_unreadable_video_files(tmp_path, capsys):
    head_cut = tmp_path / "nomoov.mp4"
    head_cut.write_bytes(sample_path(MAN).read_bytes()[:100_000])  # index at the end: cut away
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for path in (head_cut, garbage, empty):
        rc, err = _capture(["--source", str(path)], capsys)
        assert rc == 2 and "cannot open video" in err and str(path) in err, err
    rc, err = _capture(["--source", str(tmp_path / "missing.mp4")], capsys)
    assert rc == 2 and "does not exist" in err


def test_missing_camera_is_a_clear_error(capsys):
    t0 = time.monotonic()
    rc, err = _capture(["--source", "57"], capsys)
    assert rc == 2 and "camera 57" in err
    assert time.monotonic() - t0 < 10  # no hang waiting for a device that is not there
    with pytest.raises(SourceError, match="camera 57"):
        open_source(SourceConfig("57"))


def test_image_directory_source(tmp_path, capsys):
    frames = tmp_path / "frames"
    frames.mkdir()
    with open_source(SourceConfig(str(sample_path(MAN)), max_frames=3)) as src:
        for f in src:
            cv2.imwrite(str(frames / f"{f.index:04d}.png"), f.image)
    (frames / "notes.txt").write_text("ignored: not an image")
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=16)) as rx:
        assert cli.main(["capture", "--source", str(frames), "--connect", rx.bound_endpoint, "--stream", "dir"]) == 0
        assert rx.wait_for(lambda r: "dir" in r.snapshot() and r.snapshot()["dir"].end_of_stream, 5)
        got = rx.window("dir", 16)
    assert [f.seq for f in got] == [0, 1, 2, 3] and not any(f.face_lost for f in got[:-1])
    (frames / "0005.png").write_bytes(b"\x89PNG broken")
    rc, err = _capture(["--source", str(frames)], capsys)
    assert rc == 2 and "cannot decode image" in err and "0005.png" in err
    (tmp_path / "none").mkdir()
    rc, err = _capture(["--source", str(tmp_path / "none")], capsys)
    assert rc == 2 and "holds no images" in err


def test_bad_arguments_and_neutral_file(tmp_path, capsys):
    rc, err = _capture(["--source", str(sample_path(MAN)), "--stream", "has space"], capsys)
    assert rc == 2 and "stream id" in err
    (tmp_path / "n.npz").write_bytes(b"nonsense")
    rc, err = _capture(["--source", str(sample_path(MAN)), "--neutral", str(tmp_path / "n.npz")], capsys)
    assert rc == 2 and "not a readable neutral face file" in err
    rc, err = _capture(["--source", str(sample_path(MAN)), "--frames", "0"], capsys)
    assert rc == 2 and "--frames" in err
    rc, err = _capture(["--source", str(sample_path(MAN)), "--server-key", str(tmp_path / "nokey")], capsys)
    assert rc == 2 and "go together" in err


def test_grabber_hands_over_only_the_newest_frame():
    """The camera grabber fed by a real decoder that outpaces a slow consumer."""
    cap = cv2.VideoCapture(str(sample_path(MAN)))
    produced = []

    def grab():
        time.sleep(0.002)  # a 500 fps "camera"
        return cap.grab()

    def retrieve():
        ok, img = cap.retrieve()
        if ok:
            produced.append(len(produced))
            img[0, 0, 0] = produced[-1]  # tag the frame with its index
        return ok, img

    grabber = LatestFrameGrabber(grab, retrieve)
    seen, behind = [], []
    try:
        while True:
            got = grabber.get(timeout_s=5)
            if got is None:
                break
            newest = produced[-1]
            img, t_cap, _ = got
            seen.append(int(img[0, 0, 0]))
            behind.append(newest - seen[-1])  # 0, or 1 while the next frame is being handed over
            time.sleep(0.02)  # a slow tracker: 10 camera frames per processed frame
    finally:
        grabber.stop()
        cap.release()
    assert len(produced) == 72
    assert seen == sorted(set(seen))  # never the same frame twice, never an older one
    assert np.median(behind) <= 1  # what we got was the newest frame when we took it
    assert seen[-1] == 71 and len(seen) < 30
    assert grabber.skipped == 72 - len(seen)  # every frame was either handed over or counted as skipped


def test_grabber_stall_is_an_error_not_a_hang():
    release = threading.Event()

    def grab():
        release.wait(5)  # a device that stopped delivering
        return False

    grabber = LatestFrameGrabber(grab, lambda: (False, None))
    t0 = time.monotonic()
    with pytest.raises(SourceError, match="no frame for 0.3 s"):
        grabber.get(timeout_s=0.3)
    assert time.monotonic() - t0 < 1
    release.set()
    grabber.stop()


def test_bad_endpoints_are_clear_errors(capsys):
    rc = cli.main(["capture", "--source", str(sample_path(MAN)), "--connect", "tcp://no-port-here",
                   "--stream", "x", "--frames", "1"])
    assert rc == 2 and "endpoint" in capsys.readouterr().err
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*")) as rx:  # port taken by the receiver
        rc = cli.main(["capture", "--source", str(sample_path(MAN)), "--bind", rx.bound_endpoint,
                       "--stream", "x", "--frames", "1"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot use endpoint" in err and "in use" in err


def test_calibrating_on_a_clip_without_a_face_is_a_clear_error(tmp_path, capsys):
    rc = cli.main(["calibrate", "neutral", "--source", str(sample_path(NO_FACE)), "--out", str(tmp_path / "n.npz"),
                   "--seconds", "0.3"])
    assert rc == 2 and "frames with a face" in capsys.readouterr().err
    assert not (tmp_path / "n.npz").exists()


def test_unwritable_recording_path_is_a_clear_error(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory should be")
    rc, err = _capture(["--source", str(sample_path(MAN)), "--frames", "1", "--record", str(blocker / "r.hcrec")], capsys)
    assert rc == 2 and "Traceback" not in err and str(blocker) in err
