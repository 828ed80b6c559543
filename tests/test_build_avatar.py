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

import numpy as np
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
    assert set(b["stages"]) == {"track", "select", "whole_head", "mesh", "basis", "textures", "alpha", "vae",
                                "evaluate", "refinement", "animation", "kindmaps", "torso"}
    assert 3 <= pkg.manifest.n_blendshapes <= 48
    assert (package_dir / "preview.png").stat().st_size > 10_000


def test_quick_build_trains_the_animation_network(package_dir, tmp_path_factory):
    from inference.features.expression_signals import compute_signals
    from inference.features.mp478 import FEATURE_GAIN

    pkg = AvatarPackage.load(package_dir)
    raw = pkg.manifest.raw
    a = raw["animation"]
    assert a["included"] is True and a["feature_kind"] == "mp478" and a["feature_dim"] == 478 * 3
    assert a["z_dim"] == pkg.manifest.z_dim and a["window"] == 8 and a["config"]["steps"] == 250  # quick preset
    norm = raw["feature"]["normalisation"]
    assert norm["status"] == "trained" and norm["gain"] == FEATURE_GAIN and norm["scale"]["mode"] == "zero_centred"
    m = a["metrics"]
    # Every tracked frame enters (time order, windows); kept frames minus the held-out slice train.
    assert m["frames"]["total"] == raw["build"]["frames"] and m["frames"]["valid"] == raw["build"]["kept"]
    assert m["frames"]["holdout"] == raw["metrics"]["holdout_frames"]
    assert m["frames"]["train"] == raw["build"]["train_frames"]
    # The held-out slice lies beside trained frames of the same expression: the network must beat
    # a constant (mean) avatar clearly there, in latents and in decoded geometry.
    assert m["holdout"]["z_r2"] > 0.3 and m["holdout"]["weights_r2"] > 0.3
    # The training arrays are left in the work directory for the ablation harness (real data).
    work = tmp_path_factory.getbasetemp() / "quick-avatar.work"
    with np.load(work / "animation" / "animation_data.npz", allow_pickle=False) as d:
        n = raw["build"]["frames"]
        assert d["features"].shape == (n, 478 * 3) and d["z"].shape == (n, pkg.manifest.z_dim)
        assert int(d["valid"].sum()) == raw["build"]["kept"] and int(d["holdout"].sum()) == m["frames"]["holdout"]
        assert np.isnan(d["z"][~d["valid"]]).all() and np.isfinite(d["z"][d["valid"]]).all()
        assert not (d["holdout"] & ~d["valid"]).any() and (d["segments"] == 0).all()
        # features are "face minus the target's relaxed face", which the package stores; her clip never
        # shows it whole (she cries with her eyes shut, laughs with her mouth open), so it is assembled
        # per region: a mouth as closed as her most closed-mouth frames, eyes as open as her open-eyed ones.
        neutral = pkg.extra_tensors["anim.target_neutral"].numpy()
        assert np.abs(d["neutral"] - neutral).max() == 0
        faces = [compute_signals(neutral + f.reshape(478, 3) / FEATURE_GAIN) for f in d["features"][d["valid"]]]
        mouth = np.array([f.mouth_open for f in faces])
        eyes = np.array([(f.eye_open_left + f.eye_open_right) / 2 for f in faces])
        relaxed = compute_signals(neutral)
        assert relaxed.mouth_open <= np.quantile(mouth, 0.3), (relaxed.mouth_open, np.quantile(mouth, [0, 0.3, 1]))
        assert (relaxed.eye_open_left + relaxed.eye_open_right) / 2 >= np.quantile(eyes, 0.5)


def test_engine_drives_the_built_avatar_from_another_persons_capture(package_dir):
    """The man's clip through the real capture node (online neutral) → ZeroMQ → receiver → the
    streaming engine with the woman's package: her avatar's texture and geometry follow his face."""
    from capture.node import CaptureConfig, CaptureNode
    from capture.sources import SourceConfig
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.package_loader import load_avatar_model
    from streaming.protocol import Flags
    from streaming.receiver import Receiver, ReceiverConfig

    model, note = load_avatar_model(package_dir)  # no allow_untrained: the package carries its network
    assert note == "package animation network"
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=128)) as rx:
        CaptureNode(CaptureConfig(SourceConfig(str(sample_path("single_face.mp4"))), rx.bound_endpoint, "man")).run()
        assert rx.wait_for(lambda r: "man" in r.snapshot() and r.snapshot()["man"].end_of_stream, 5)
        frames = [f for f in rx.window("man", 128) if not f.flags & Flags.END_OF_STREAM]
    assert len(frames) == 72 and not any(f.face_lost for f in frames)
    engine = StreamingEngine({"man": model}, EngineConfig(device="cpu"))
    textures, weights = [], []
    for i, f in enumerate(frames):
        st = engine.step({"man": [f]}, now_ns=10**12 + i * 33_333_333)["man"]
        assert st.status == "tracking" and st.seq == f.seq
        assert st.texture.dtype == np.uint8 and st.texture.shape == (pkg_size := model.decoder.cfg.texture_size, pkg_size, 4)
        textures.append(st.texture[..., :3].astype(np.float32))
        weights.append(np.asarray(st.weights, np.float32))
    tex, w = np.stack(textures), np.stack(weights)
    # He starts calm (features ≈ 0 once the online neutral has its first estimate, frames 9-16) and
    # smiles from frame ~17 to the end: the avatar must change with him — far more between his calm
    # and smiling stretches than within either (measured on this build: 4.9 vs 0.6 / 0.7 grey
    # levels per texel; weights 1.4 vs 0.12).
    calm, smile = slice(9, 17), slice(22, 68)
    between = np.abs(tex[smile].mean(0) - tex[calm].mean(0)).mean()
    within_calm = np.abs(tex[calm] - tex[calm].mean(0)).mean()
    within_smile = np.abs(tex[smile] - tex[smile].mean(0)).mean()
    assert between > 2.0 and between > 3 * max(within_calm, within_smile), (between, within_calm, within_smile)
    assert np.abs(w[smile].mean(0) - w[calm].mean(0)).max() > 4 * w[calm].std(0).mean()
    assert len({t.tobytes() for t in textures}) > 30  # a live texture, not a frozen face


def test_rebuild_reuses_every_stage(package_dir, tmp_path_factory, capsys):
    base = tmp_path_factory.getbasetemp()
    rc = cli.main(["build-avatar", "--video", str(sample_path(WOMAN)), "--out", str(package_dir), "--quick",
                   "--work", str(base / "quick-avatar.work")])
    assert rc == 0
    out = capsys.readouterr().out
    for stage in ("track", "select", "mesh", "basis", "textures", "alpha", "vae", "evaluate", "animation", "kindmaps"):
        assert f"{stage:<9} cached" in out, out
    AvatarPackage.load(package_dir)


# The stage keys of a --quick build of the woman clip. What goes into a stage key is the work
# directory's format: while these stay, every existing work directory stays valid. Change them only
# with a stage's algorithm (and STAGE_VERSION). Builder 8 (the whole head) adds whole_head and
# refinement, issue 16 adds kindmaps, builder 9 alpha (and the refinement renders with it), builder 10
# the whole head's textures (the unseen back's hair colour, the gutters' nearest-island fill) and so
# vae, evaluate, refinement and animation; the carved shell changes mesh and everything after it. track/select/basis keep the keys
# builder 6 wrote, and a --no-whole-head build keeps builder 6's keys for every earlier stage
# (mesh e74cafba2c20bb06, textures c71924d5d218d486, vae 641c95fab20dfc75, evaluate 35d949748be5bdd1,
# animation a38904b4c72ff629: measured). Builder 11 adds torso and changes no other key.
QUICK_STAGE_KEYS = {"track": "d261502dc11aae44", "select": "979df930e53f81ac", "whole_head": "297027ac82ab93c8",
                    "mesh": "dda906e1c3131422", "basis": "ab4c70901727562a", "textures": "53fbf6a0307fd825",
                    "vae": "4104ecf0574bc347", "evaluate": "4a02178a5208f110", "refinement": "9b5602181c18c231",
                    "animation": "04066e1f59f5c8b1",
                    "kindmaps": "6a237b7b02321910", "alpha": "c2a65d514b974879", "torso": "f52beb4db144645c"}


def test_stage_keys_keep_existing_work_directories_valid(package_dir, tmp_path_factory):
    stages = tmp_path_factory.getbasetemp() / "quick-avatar.work" / "stages"
    keys = {p.stem: json.loads(p.read_text())["key"] for p in stages.glob("*.json")}
    assert keys == QUICK_STAGE_KEYS


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


def _stale_default(package_dir, tmp_path_factory, tmp_path, monkeypatch, edit, keep_animation: bool) -> Path:
    """The quick package, edited by ``edit(manifest)``, as the cached default avatar in a redirected
    user cache whose work directory holds the quick build's finished stages."""
    import shutil

    from inference.avatar_package import MANIFEST, write_package
    from tools import samples
    from tools.cmd_avatar import default_avatar_dir

    clip = sample_path(samples.AVATAR_CLIP)  # resolved in the real cache, before redirecting it
    monkeypatch.setenv("HEADCAST_CACHE", str(tmp_path))
    (tmp_path / "samples").mkdir()
    (tmp_path / "samples" / samples.AVATAR_CLIP).symlink_to(clip)
    target = default_avatar_dir(quick=True)
    shutil.copytree(tmp_path_factory.getbasetemp() / "quick-avatar.work", target.parent / ".work" / target.name)
    old = AvatarPackage.load(package_dir)
    raw = json.loads((package_dir / MANIFEST).read_text())
    edit(raw)
    write_package(target, raw, old.vae_decoder, old.mesh, np.zeros((8, 8, 3), np.uint8),
                  (package_dir / "preview.png").read_bytes(), extra_tensors=old.extra_tensors if keep_animation else None)
    return target


def test_default_avatar_without_animation_network_is_rebuilt(package_dir, tmp_path_factory, tmp_path, monkeypatch):
    """A cached default package from before the animation stage (head model only) is rebuilt in
    place, not returned; the work directory's finished stages make that a re-export here."""
    from tools.cmd_avatar import ensure_default_avatar

    def head_model_only(raw):
        raw["animation"] = {"included": False, "lstm": None}
        raw["refinement"] = {"included": False}  # a package from before builder 8 had neither
        raw["alpha"] = {"included": False}  # nor the learned alpha (builder 9)

    target = _stale_default(package_dir, tmp_path_factory, tmp_path, monkeypatch, head_model_only, False)
    assert AvatarPackage.load(target).animation is None
    logged = []
    assert ensure_default_avatar(quick=True, log=logged.append) == target
    assert any("no animation network" in line for line in logged), logged
    pkg = AvatarPackage.load(target)
    assert pkg.animation is not None and pkg.manifest.raw["provenance"]["build_command"] == "headcast avatar default --quick"
    assert sorted(p.name for p in target.parent.iterdir()) == [".work", target.name]  # no leftover temporaries


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
    # Held-out blocks spread over the whole material: both takes hold some.
    blocks = raw["build"]["holdout_frame_ranges"]
    assert any(lo.startswith("video0:") for lo, _ in blocks) and any(lo.startswith("video1:") for lo, _ in blocks)
    assert all(lo.split(":")[0] == hi.split(":")[0] for lo, hi in blocks)  # a block never spans two videos


def test_out_that_is_not_a_package_is_never_replaced(tmp_path, capsys):
    precious = tmp_path / "documents"
    precious.mkdir()
    (precious / "thesis.txt").write_text("years of work")
    rc, err = _build(["--video", str(sample_path(WOMAN)), "--out", str(precious), "--quick"], capsys)
    assert rc == 2 and "not an avatar package" in err
    assert (precious / "thesis.txt").read_text() == "years of work"


def test_default_avatar_from_another_builder_version_is_rebuilt(package_dir, tmp_path_factory, tmp_path, monkeypatch):
    """A cached default package with an animation network but from an older builder (one that
    trained it without the relaxed face and recombination) is rebuilt, not kept forever."""
    from inference.builder import BUILDER_VERSION
    from tools.cmd_avatar import ensure_default_avatar

    def older(raw):
        raw["provenance"]["builder_version"] = "5"

    target = _stale_default(package_dir, tmp_path_factory, tmp_path, monkeypatch, older, True)
    assert AvatarPackage.load(target).animation is not None
    logged = []
    assert ensure_default_avatar(quick=True, log=logged.append) == target
    assert any("builder version 5" in line for line in logged), logged
    assert AvatarPackage.load(target).manifest.raw["provenance"]["builder_version"] == BUILDER_VERSION
