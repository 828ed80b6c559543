"""`headcast build-avatar` end to end on the real sample clips: the quick build, its summary, bad
inputs (each a clear error), and resuming a build that was killed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from _avatar_quick import WOMAN, quick_build
from inference.avatar_package import AvatarPackage
from tools import cli
from tools.samples import sample_path

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory) -> Path:
    return quick_build(tmp_path_factory.getbasetemp())


def test_quick_build_produces_a_valid_package(package_dir):
    pkg = AvatarPackage.load(package_dir)
    raw = pkg.manifest.raw
    b = raw["build"]
    # The woman clip has a long hand-over-face passage; it must be rejected, the rest kept.
    assert b["rejected"]["hand_over_face"] >= 30
    assert b["kept"] >= 100
    assert set(b["stages"]) == {"track", "select", "mesh", "basis", "textures", "vae", "evaluate"}
    assert 3 <= pkg.manifest.n_blendshapes <= 48
    assert (package_dir / "preview.png").stat().st_size > 10_000


def test_rebuild_reuses_every_stage(package_dir, tmp_path_factory, capsys):
    base = tmp_path_factory.getbasetemp()
    rc = cli.main(["build-avatar", "--video", str(sample_path(WOMAN)), "--out", str(package_dir), "--quick",
                   "--work", str(base / "quick-avatar.work")])
    assert rc == 0
    out = capsys.readouterr().out
    for stage in ("track", "select", "mesh", "basis", "textures", "vae", "evaluate"):
        assert f"{stage:<9} cached" in out, out
    AvatarPackage.load(package_dir)


def _build(args: list[str], capsys) -> tuple[int, str]:
    rc = cli.main(["build-avatar", *args])
    cap = capsys.readouterr()
    return rc, cap.err


def test_no_face_video_is_a_clear_error(tmp_path, capsys):
    rc, err = _build(["--video", str(sample_path("no_face.mp4")), "--out", str(tmp_path / "a"), "--quick"], capsys)
    assert rc == 2 and "no face found" in err and "no_face.mp4" in err
    assert not (tmp_path / "a").exists()


def test_corrupt_video_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "corrupt.mp4"
    bad.write_bytes(os.urandom(50_000))
    rc, err = _build(["--video", str(bad), "--out", str(tmp_path / "a"), "--quick"], capsys)
    assert rc == 2 and "corrupt.mp4" in err and ("not a readable video" in err or "no decodable frame" in err)


def test_truncated_video_is_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "truncated.mp4"
    bad.write_bytes(Path(sample_path(WOMAN)).read_bytes()[:4000])
    rc, err = _build(["--video", str(bad), "--out", str(tmp_path / "a"), "--quick"], capsys)
    assert rc == 2 and "truncated.mp4" in err


def test_missing_and_empty_video(tmp_path, capsys):
    rc, err = _build(["--video", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "no such video file" in err
    (tmp_path / "empty.mp4").write_bytes(b"")
    rc, err = _build(["--video", str(tmp_path / "empty.mp4"), "--out", str(tmp_path / "a")], capsys)
    assert rc == 2 and "empty" in err


def test_bad_resolution_is_rejected(tmp_path, capsys):
    rc, err = _build(["--video", str(sample_path(WOMAN)), "--out", str(tmp_path / "a"), "--res", "100"], capsys)
    assert rc == 2 and "--res" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error")
def test_cuda_without_gpu_is_a_clear_error(tmp_path, capsys):
    rc, err = _build(["--video", str(sample_path(WOMAN)), "--out", str(tmp_path / "a"), "--device", "cuda"], capsys)
    assert rc == 2 and "CUDA" in err


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    t0 = time.monotonic()
    while not path.exists():
        assert proc.poll() is None, "build exited before the point where the test kills it"
        assert time.monotonic() - t0 < timeout, f"{path} never appeared"
        time.sleep(0.02)


@pytest.mark.slow
def test_killed_build_resumes_where_it_stopped(tmp_path, capsys):
    """Kill the build (SIGKILL, no cleanup) during VAE training, after tracking and a first training
    checkpoint; the rerun must reuse the finished stages and continue training from the checkpoint."""
    work, out = tmp_path / "work", tmp_path / "pkg"
    args = ["build-avatar", "--video", str(sample_path(WOMAN)), "--out", str(out), "--work", str(work),
            "--quick", "--steps", "600"]
    proc = subprocess.Popen([sys.executable, "-m", "tools.cli", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(work / "vae" / "checkpoint.safetensors", proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert (work / "stages" / "track.json").is_file()
    assert not (work / "stages" / "vae.json").exists()
    assert not out.exists()  # a killed build never leaves a package

    assert cli.main(args) == 0
    text = capsys.readouterr().out
    assert "track     cached" in text and "textures  cached" in text
    vae = json.loads((work / "stages" / "vae.json").read_text())
    assert vae["info"]["resumed_from_step"] > 0
    AvatarPackage.load(out)


def test_default_avatar_is_reused_when_present(package_dir, tmp_path, monkeypatch):
    """`headcast avatar default` returns a valid cached package at once, without building."""
    import shutil

    from tools.cmd_avatar import default_avatar_dir, ensure_default_avatar

    monkeypatch.setenv("HEADCAST_CACHE", str(tmp_path))
    target = default_avatar_dir(quick=True)
    assert str(target).startswith(str(tmp_path))
    shutil.copytree(package_dir, target)
    logged = []
    t0 = time.monotonic()
    assert ensure_default_avatar(quick=True, log=logged.append) == target
    assert logged == [] and time.monotonic() - t0 < 10


@pytest.mark.slow
def test_two_videos_of_another_person(tmp_path, capsys):
    """--video twice (the man clip, as two takes): both sources are tracked, kept and recorded."""
    man = str(sample_path("single_face.mp4"))
    out = tmp_path / "man"
    assert cli.main(["build-avatar", "--video", man, "--video", man, "--out", str(out), "--quick"]) == 0
    pkg = AvatarPackage.load(out)
    raw = pkg.manifest.raw
    assert len(raw["provenance"]["sources"]) == 2
    assert raw["build"]["frames"] == 72  # 2 × 36 (quick tracks every second frame)
    assert raw["build"]["kept"] >= 60  # no hands, frontal: nearly everything is usable
    assert "video1" in raw["build"]["holdout_frame_range"][1] or "video1" in raw["build"]["holdout_frame_range"][0]


def test_out_that_is_not_a_package_is_never_replaced(tmp_path, capsys):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    rc, err = _build(["--video", str(sample_path(WOMAN)), "--out", str(precious), "--quick"], capsys)
    assert rc == 2 and "not an avatar package" in err
    assert (precious / "thesis.txt").read_text() == "years of work"
