"""The whole head (issue 12) on the real quick avatar of the sample woman: head mattes from
MediaPipe selfie segmentation, the carved head shell, the screen-space refinement, measured in
the source camera's view on held-out frames; the turntable; bad input.

Thresholds suit the quick build (64² texture, every second frame, 12 held-out frames scored),
measured on this machine: whole-head IoU 0.90–0.91 (face mesh alone 0.50), PSNR over the union of
mattes +5.3–5.5 dB over the face mesh alone and +2.35 dB over the quick face-and-skull model
(31 frames). The test asserts IoU ≥ 0.88 and a gain ≥ 3 dB over the face mesh alone (the
face-and-skull comparison needs a second build and is recorded in docs/BENCHMARKS.md instead).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _avatar_quick import WOMAN, quick_build
from inference.avatar_package import AvatarPackage
from tools.samples import sample_path


@pytest.fixture(scope="session")
def package_dir(tmp_path_factory) -> Path:
    return quick_build(tmp_path_factory.getbasetemp())


def test_quick_package_carries_the_whole_head(package_dir):
    raw = json.loads((package_dir / "avatar.json").read_text())
    wh = raw["whole_head"]
    assert wh["status"] == "fitted", wh
    assert wh["mattes"]["usable"] == wh["mattes"]["frames"] > 100
    # The face hull is about half of the head matte: the rest is what the shell must carry.
    assert 0.35 < wh["mattes"]["face_share_of_head_matte_median"] < 0.65
    assert 0.3 < wh["inferred_share_of_sphere"] < 0.8  # the back is completed, and says so
    assert raw["provenance"]["builder_version"] == "11"
    pkg = AvatarPackage.load(package_dir)
    assert pkg.refinement is not None and raw["refinement"]["included"]
    m = raw["refinement"]["metrics"]
    assert m["cpu_ms_two_eyes_1thread"] > 0 and m["holdout_frames"] > 10
    # The refinement is the CPU default only when it measured better and within the budget.
    assert raw["refinement"]["default"]["cpu"] == (m["holdout_psnr_db_with"] > m["holdout_psnr_db_without"]
                                                   and m["cpu_ms_two_eyes_1thread"] <= m["cpu_budget_ms"]
                                                   and m["holdout_iou_with"] >= m["holdout_iou_without"] - 0.002)
    # The mesh reaches well beyond the face: hair stands out beside and above it.
    face = pkg.mesh.positions[:468]
    width_face = np.ptp(face[:, 0])
    assert np.ptp(pkg.mesh.positions[:, 0]) > 1.25 * width_face


def test_quick_package_carries_a_learned_soft_outline(package_dir):
    """The shell's alpha is learned from the mattes (head_model/alpha_atlas.py): part of the shell
    is soft, the tracked face is opaque, the decoder's texture carries it as its A channel, and
    mesh.glb carries it too (alphaMode BLEND, an RGBA PNG)."""
    import cv2
    import pygltflib

    from inference.engine.package_loader import idle_face
    from inference.head_model.uv_atlas import texel_table

    pkg = AvatarPackage.load(package_dir)
    block = pkg.manifest.raw["alpha"]
    assert block["included"] and pkg.alpha is not None
    mesh = pkg.mesh
    n_face = pkg.manifest.raw["whole_head"]["n_face_triangles"]
    table = texel_table(mesh.uvs, mesh.indices.astype(np.int64), pkg.manifest.texture_size, n_face)
    shell = table.covered & ~table.face_region
    soft = (pkg.alpha > 12) & (pkg.alpha < 243)
    # Measured on the quick build: 30 % of the shell's texels soft, none clear, mean 0.93.
    assert 0.05 < soft[shell].mean() < 0.8, block["metrics"]
    assert (pkg.alpha[table.face_region] == 255).all()
    texture, _ = idle_face(pkg)
    np.testing.assert_array_equal(texture[..., 3], pkg.alpha)
    glb = pygltflib.GLTF2().load_binary(str(package_dir / "mesh.glb"))
    # The head opaque (all its triangles), and its soft triangles again as a BLEND fringe 3 mm out
    # (gltf_io.write_glb: why not one BLEND primitive), with their own morph targets.
    head, fringe = glb.meshes[0].primitives
    assert [glb.materials[p.material].alphaMode for p in (head, fringe)] == ["OPAQUE", "BLEND"]
    assert glb.accessors[head.indices].count == mesh.indices.size
    n_fringe = glb.accessors[fringe.indices].count // 3
    assert 0.05 < n_fringe / len(mesh.indices) < 0.6, n_fringe
    assert len(fringe.targets) == len(head.targets)
    lo, hi = np.array(glb.accessors[fringe.attributes.POSITION].min), np.array(glb.accessors[fringe.attributes.POSITION].max)
    assert (lo >= mesh.positions.min(0) - 0.0035).all() and (hi <= mesh.positions.max(0) + 0.0035).all()
    view = glb.bufferViews[glb.images[0].bufferView]
    png = glb.binary_blob()[view.byteOffset:view.byteOffset + view.byteLength]
    rgba = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert rgba.shape[2] == 4 and (rgba[..., 3] == pkg.alpha).all()


def test_appearance_in_the_source_view_beats_the_face_mesh(package_dir, tmp_path):
    from tools import cli

    out = tmp_path / "app.json"
    rc = cli.main(["eval", "appearance", "--avatar", str(package_dir), "--video", str(sample_path(WOMAN)),
                   "--json", str(out), "--max-frames", "12"])
    assert rc == 0
    r = json.loads(out.read_text())
    whole, face = r["models"]["whole"], r["models"]["face_only"]
    assert whole["iou"] >= 0.88, r["models"]
    assert face["iou"] < 0.6
    assert whole["psnr_db"] - face["psnr_db"] >= 3.0, r["models"]
    assert whole["ssim"] > face["ssim"]
    # Where the outline errs: drawn beyond her head plus her head left uncovered is what IoU misses.
    # (Measured on the quick build: over 0.023, under 0.067 — mostly too small: static hair.)
    for m in (whole, face):
        assert m["over"] + m["under"] == pytest.approx(1 - m["iou"], abs=3e-4)
    assert face["under"] > 0.3 > face["over"]  # the face mesh alone leaves her hair uncovered
    # Deterministic renderer and refinement: a still driver does not shimmer more than the face alone.
    assert r["still_shimmer"]["whole"] <= r["still_shimmer"]["face_only"] + 0.05
    if "refined" in r["models"]:
        assert r["still_shimmer"]["refined"] <= r["still_shimmer"]["face_only"] + 0.05


def test_refinement_is_deterministic_and_eye_consistent(package_dir):
    from inference.head_model.refinement import refinement_from_package

    pkg = AvatarPackage.load(package_dir)
    refiner = refinement_from_package(pkg)
    rng = np.random.default_rng(0)
    alpha = np.zeros((120, 160), np.float32)
    alpha[20:100, 40:120] = 1.0
    rgb = (rng.random((120, 160, 3)).astype(np.float32) * alpha[..., None])
    a1 = refiner(rgb, alpha)
    a2 = refiner(rgb.copy(), alpha.copy())
    assert np.array_equal(a1[0], a2[0]) and np.array_equal(a1[1], a2[1])  # no noise, no state
    # The same head seen by the other eye a few pixels over: the correction moves with it.
    shift = 6
    b = refiner(np.roll(rgb, shift, axis=1), np.roll(alpha, shift, axis=1))
    assert np.abs(np.roll(a1[1], shift, axis=1) - b[1])[:, 50:130].mean() < 0.02


def test_turntable_has_no_holes(package_dir, tmp_path):
    from tools import cli

    out, js = tmp_path / "turn.mp4", tmp_path / "turn.json"
    assert cli.main(["avatar", "turntable", str(package_dir), "--out", str(out), "--size", "96", "--yaws", "8",
                     "--json", str(js)]) == 0
    r = json.loads(js.read_text())
    assert set(r["holes_by_yaw"]) == {"neutral", "smiling"}
    assert all(h <= 0.01 for rows in r["holes_by_yaw"].values() for _, h in rows), r["worst"]
    assert out.stat().st_size > 1000


def _edited_sample(out: Path, edit, source: str = WOMAN) -> Path:
    """Writes a sample clip (the woman's unless ``source`` names another) with ``edit(frame_bgr) ->
    frame_bgr`` applied to every frame (mp4v) to ``out`` and returns it."""
    import cv2

    cap = cv2.VideoCapture(str(sample_path(source)))
    fps = cap.get(cv2.CAP_PROP_FPS)
    writer = None
    ok, frame = cap.read()
    while ok:
        edited = np.ascontiguousarray(edit(frame))
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, edited.shape[1::-1])
        writer.write(edited)
        ok, frame = cap.read()
    writer.release()
    cap.release()
    return out


def _quick_avatar_of(clip: Path) -> Path:
    from tools import cli

    avatar = clip.with_name(clip.stem + "-avatar")
    assert cli.main(["build-avatar", "--video", str(clip), "--out", str(avatar), "--quick"]) == 0
    return avatar


def test_hair_leaving_the_frame_is_inferred_and_said(package_dir, tmp_path):
    """Issue 12's bad input: the sample clip with its top 90 rows cut off, so her hair and the top
    of her forehead leave the picture (the uncropped clip already runs off the top: 145 of 145
    quick-build frames). The build still fits the whole head, marks more of it inferred, says in
    the manifest what was beyond the frame, and the head has no holes."""
    from tools import cli

    out = _quick_avatar_of(_edited_sample(tmp_path / "cut.mp4", lambda frame: frame[90:]))
    wh = json.loads((out / "avatar.json").read_text())["whole_head"]
    assert wh["status"] == "fitted", wh
    usable = wh["mattes"]["usable"]
    # Measured: the top edge cuts the head in 138 of 138 usable frames (her hair on the right in 95).
    assert wh["mattes"]["head_cut_by_frame"]["top"] >= 0.9 * usable
    assert any("beyond the frame's top edge (inferred" in c for c in wh["contains"]), wh["contains"]
    full = json.loads((package_dir / "avatar.json").read_text())["whole_head"]
    # Measured: 0.768 of the shell's sphere inferred against 0.663 for the uncropped clip.
    assert wh["inferred_share_of_sphere"] > full["inferred_share_of_sphere"] + 0.05
    js = tmp_path / "turn.json"
    assert cli.main(["avatar", "turntable", str(out), "--out", str(tmp_path / "turn.mp4"), "--size", "96",
                     "--yaws", "8", "--json", str(js)]) == 0
    holes = json.loads(js.read_text())["holes_by_yaw"]
    assert all(h <= 0.01 for rows in holes.values() for _, h in rows), holes


def test_a_busy_background_still_gives_the_whole_head(tmp_path):
    """Issue 12's bad input: the sample woman in front of a busy background (saturated blocks of
    every size, as shelves and posters would be), composited with the segmenter's own person matte.
    The outline is therefore the one the segmenter found on the plain wall; what this checks is that
    the clutter behind her does not break segmentation, the shell or the appearance. Measured: 145
    of 145 mattes usable, face share 0.52 (as on the plain clip), IoU 0.907 on 12 held-out frames
    (0.910 plain), PSNR +4.8 dB over the face mesh."""
    import cv2

    from inference.head_model.matte import PersonSegmenter
    from tools import cli

    clip = tmp_path / "busy.mp4"
    h, w = 360, 640  # the sample clip's size
    rng = np.random.default_rng(7)
    bg = np.zeros((h, w, 3), np.uint8)
    for _ in range(400):
        x, y, side = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(6, 60))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(bg, (x, y), (int(x + side * rng.uniform(0.3, 2)), y + side), colour, -1)
    with PersonSegmenter() as seg:
        def composite(frame):
            m = seg.person(frame)[..., None]
            return (frame * m + bg * (1 - m)).astype(np.uint8)

        _edited_sample(clip, composite)
    out = _quick_avatar_of(clip)
    wh = json.loads((out / "avatar.json").read_text())["whole_head"]
    assert wh["status"] == "fitted" and wh["mattes"]["usable"] >= 0.9 * wh["mattes"]["frames"], wh
    assert 0.4 < wh["mattes"]["face_share_of_head_matte_median"] < 0.65, wh["mattes"]
    js = tmp_path / "app.json"
    assert cli.main(["eval", "appearance", "--avatar", str(out), "--video", str(clip), "--json", str(js),
                     "--max-frames", "12"]) == 0
    r = json.loads(js.read_text())
    assert r["models"]["whole"]["iou"] >= 0.85, r["models"]


def test_segmentation_failures_are_named(tmp_path):
    """No person, a person far away, a matte that misses the face: refused by name (the build then
    falls back to the face-and-skull model and records why)."""
    import cv2

    from inference.features.face_tracker import FaceTracker
    from inference.head_model.matte import PersonSegmenter, head_matte, matte_quality

    cap = cv2.VideoCapture(str(sample_path(WOMAN)))
    ok, frame = cap.read()
    cap.release()
    assert ok
    with FaceTracker() as tr, PersonSegmenter() as seg:
        lm = tr.track(frame).landmarks_px
        good = head_matte(seg.person(frame), lm)
        assert matte_quality(good, lm).ok
        blank = np.zeros(frame.shape[:2], np.float32)
        assert matte_quality(blank, lm).reason == "no person found by segmentation"
        half = good.copy()
        half[:, : int(lm[:468, 0].mean())] = 0  # segmentation that loses half the face
        assert matte_quality(half, lm).reason == "segmentation misses the face"
        tiny = lm.copy()
        tiny[:, :2] = tiny[:, :2] * 0.05  # the same face 20× farther away
        small = np.zeros_like(good)
        small[:30, :30] = 1.0
        assert "far away" in matte_quality(small, tiny).reason


def test_fallback_builds_the_face_and_skull_model():
    """Without a shell the mesh is exactly today's procedural skull (what a fallback package holds)."""
    from inference.head_model.head_closure import ClosureConfig, fit_head_shape
    from inference.head_model.head_mesh import build_head_mesh
    from inference.head_model.head_shell import HeadShell

    import cv2

    from inference.features.alignment import to_canonical
    from inference.features.face_tracker import FaceTracker

    cap = cv2.VideoCapture(str(sample_path(WOMAN)))
    ok, frame = cap.read()
    cap.release()
    with FaceTracker() as tr:
        face = to_canonical(tr.track(frame).landmarks_px)[0]
    face = face[:468].astype(np.float64)
    plain = build_head_mesh(face, face, ClosureConfig())
    unit = HeadShell(fit_head_shape(face), np.ones((36, 72), np.float32), np.zeros((36, 72), bool))
    same = build_head_mesh(face, face, ClosureConfig(), radius_fn=unit.radius)
    np.testing.assert_allclose(plain.positions, same.positions, atol=1e-5)
    wider = HeadShell(fit_head_shape(face), np.full((36, 72), 1.3, np.float32), np.zeros((36, 72), bool))
    big = build_head_mesh(face, face, ClosureConfig(blend_power=8.0), radius_fn=wider.radius)
    assert np.ptp(big.positions[:, 0]) > 1.2 * np.ptp(plain.positions[:, 0])


def test_avatars_are_drawn_back_to_front():
    """Soft-edged heads blend over what is behind them: the renderer draws the farthest first."""
    from xr_runtime.gl.renderer import AvatarDrawState, sorted_back_to_front

    def at(z: float) -> AvatarDrawState:
        m = np.eye(4, dtype=np.float32)
        m[2, 3] = z
        return AvatarDrawState(avatar=None, model_matrix=m)

    # OpenGL camera looks down −z: clip w = −z_view, so z = −5 is farthest.
    proj = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, -1, -0.2], [0, 0, -1, 0]], np.float64)
    states = [at(-1.0), at(-5.0), at(-2.5)]
    assert [s.model_matrix[2, 3] for s in sorted_back_to_front(proj, states)] == [-5.0, -2.5, -1.0]


def test_unusable_mattes_fall_back_to_the_face_and_skull_model(package_dir, tmp_path_factory):
    """Segmentation that finds nobody in any frame (here: a matte threshold no pixel reaches, on the
    real clip and the real segmenter) makes the stage fall back and say why, never a broken shell."""
    from inference.builder.cache import StageCache
    from inference.builder.config import BuildConfig
    from inference.builder.select import SelectInput, select
    from inference.builder.sources import probe_sources
    from inference.builder.track import TrackInput, track
    from inference.builder.whole_head import WholeHeadInput, fit_whole_head, whole_head_block
    from inference.head_model.matte import MatteConfig
    from inference.head_model.whole_head import WholeHeadConfig

    work = tmp_path_factory.getbasetemp() / "quick-avatar.work"
    cfg = BuildConfig.preset([str(sample_path(WOMAN))], package_dir, work, quick=True)
    cache = StageCache(work)
    sources = probe_sources(cfg.videos)
    tracks = track(cache, TrackInput(sources, cfg.track))  # cached: the session's quick build
    sel = select(cache, SelectInput(tracks, cfg.selection, cfg.holdout_fraction, cfg.holdout_blocks,
                                    cfg.track.frame_step))
    blind = WholeHeadConfig(matte=MatteConfig(threshold=1.01))
    fallback_cache = StageCache(tmp_path_factory.mktemp("fallback-work"))
    whole = fit_whole_head(fallback_cache, WholeHeadInput(sources, tracks, sel, blind))
    assert whole.shell is None
    assert whole.info["status"] == "fallback"
    assert "no person found by segmentation" in whole.info["reason"] and "face-and-skull" in whole.info["reason"]
    from inference.builder.mesh import MeshInput, build_mesh

    mesh = build_mesh(fallback_cache, MeshInput(sel, cfg.closure, whole.shell, whole.key))
    block = whole_head_block(whole, mesh.mesh)
    assert block["status"] == "fallback" and any("procedural skull" in c for c in block["contains"])
    # No shell, no learned outline: the atlas stays opaque and the manifest says why.
    from inference.builder.alpha import AlphaInput, alpha_block, learn_alpha

    alpha = learn_alpha(fallback_cache, AlphaInput(tracks, sel, mesh, whole, cfg.res, cfg.unwrap, cfg.alpha))
    assert alpha.atlas is None and alpha_block(alpha) == {"included": False,
                                                          "reason": "no head shell (face-and-skull model)"}


def test_a_short_haired_head_is_hair_coloured_behind(tmp_path):
    """The single_face clip: a man with short black hair seen from the front only. The back of his
    head is never seen; it must take the colour of the hair the clip does show on top of his head,
    not the skin of his ears and temples (what diffusion from the seen shell alone gave: a bald
    look from behind). His face, from the front, stays skin."""
    from inference.avatar_package import AvatarPackage
    from inference.head_model.turntable import TurntableConfig, faces_of, render_turn
    from inference.engine.package_loader import idle_z

    clip = tmp_path / "single_face.mp4"
    clip.write_bytes(sample_path("single_face.mp4").read_bytes())
    pkg = AvatarPackage.load(_quick_avatar_of(clip))
    texture, weights = faces_of(pkg, idle_z(pkg))["neutral"]
    cfg = TurntableConfig(size=128)

    def luma(yaw: float, box: slice) -> float:
        rgb, alpha = render_turn(pkg, texture, weights, yaw, cfg, with_torso=False)  # his head, framed alone
        region = alpha[box, box] > 0.99
        assert region.mean() > 0.9, f"the head should fill the centre at {yaw}°"
        return float(rgb[box, box][region].mean())

    centre = slice(48, 80)
    face, back = luma(0.0, centre), luma(180.0, centre)
    # Measured (quick build, grey levels): face 123, back 24; before the hair fill the back was 85.
    assert back < 0.5 * face, (face, back)


def shave(frame: np.ndarray, landmarks_px: np.ndarray, person: np.ndarray) -> np.ndarray:
    """A short-haired head made bald: the person matte above the brows and outside the face hull,
    and the hull's band above the forehead point, painted in the forehead's own skin colour,
    a little darker towards the crown."""
    import cv2

    h, w = frame.shape[:2]
    lm = landmarks_px
    face = np.zeros((h, w), np.uint8)
    cv2.fillConvexPoly(face, cv2.convexHull(lm[:468, :2].astype(np.float32)).astype(np.int32), 1)
    brow = float(lm[[70, 300], 1].mean())
    yy = np.broadcast_to(np.arange(h, dtype=np.float64)[:, None], (h, w))
    forehead = (face == 1) & (yy > lm[10, 1] + 0.03 * h) & (yy < brow - 0.01 * h)
    skin = np.median(frame[forehead], axis=0) if forehead.any() else np.array([120.0, 140.0, 190.0])
    scalp = ((person > 0.5) & (face == 0) & (yy < brow)) | ((face == 1) & (yy < lm[10, 1] + 0.02 * h))
    out = frame.copy()
    shade = np.clip(1.0 - 0.25 * (brow - yy[scalp]) / max(brow, 1.0), 0.7, 1.0)
    out[scalp] = (skin[None, :] * shade[:, None]).astype(np.uint8)
    return out


def test_a_bald_head_is_skin_coloured_behind(tmp_path):
    """Issue 12's bad input: a bald target. No clip here shows one, so the single_face man's short
    hair is painted in his forehead's skin colour, frame by frame (``shave``). The build fits the
    whole head, and the back of the head, which the clip never shows, takes the colour of the
    seen top of the head — skin — instead of the dark hair of his own clip (test above).
    Measured (quick build, mean RGB): face (161, 108, 93), back (144, 100, 79) — grey 121 and 108;
    reddish like the face."""
    from inference.avatar_package import AvatarPackage
    from inference.engine.package_loader import idle_z
    from inference.features.face_tracker import FaceTracker
    from inference.head_model.matte import PersonSegmenter
    from inference.head_model.turntable import TurntableConfig, faces_of, render_turn

    clip = tmp_path / "bald.mp4"
    tracker, seg = FaceTracker(), PersonSegmenter()
    try:
        def edit(frame):
            face = tracker.track(frame)
            return frame if face is None else shave(frame, face.landmarks_px, seg.person(frame))

        _edited_sample(clip, edit, source="single_face.mp4")
    finally:
        tracker.close()
        seg.close()
    out = _quick_avatar_of(clip)
    pkg = AvatarPackage.load(out)
    assert pkg.manifest.raw["whole_head"]["status"] == "fitted"
    texture, weights = faces_of(pkg, idle_z(pkg))["neutral"]
    cfg = TurntableConfig(size=128)
    centre = slice(48, 80)

    def colour(yaw: float) -> np.ndarray:
        rgb, alpha = render_turn(pkg, texture, weights, yaw, cfg, with_torso=False)
        region = alpha[centre, centre] > 0.99
        assert region.mean() > 0.9, f"the head should fill the centre at {yaw}°"
        return rgb[centre, centre][region].mean(0)

    face, back = colour(0.0), colour(180.0)
    assert back.mean() > 0.7 * face.mean(), (face, back)  # his own short hair gave 24 against 123
    assert back[0] > back[2] + 10, back  # skin, not grey


def draw_glasses(frame: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """Thick dark frames and tinted lenses over both eyes, a bridge and the arms to the temples,
    sized from the eye corners (FaceMesh 33/133, 362/263) — what a clip of a person wearing glasses
    puts in front of the tracker, the segmenter and the texture."""
    import cv2

    out = frame.copy()
    p = landmarks_px[:, :2].astype(np.float64)
    lenses = np.zeros(frame.shape[:2], np.uint8)
    rims = []
    for outer, inner in ((33, 133), (263, 362)):
        centre = 0.5 * (p[outer] + p[inner])
        width = float(np.linalg.norm(p[outer] - p[inner]))
        angle = float(np.degrees(np.arctan2(*(p[inner] - p[outer])[::-1])))
        axes = (int(0.85 * width), int(0.6 * width))
        cv2.ellipse(lenses, tuple(int(v) for v in centre), axes, angle, 0, 360, 255, -1)
        rims.append((tuple(int(v) for v in centre), axes, angle, max(2, int(0.12 * width))))
    tint = lenses[..., None] / 255.0 * 0.45
    out = (out * (1 - tint) + np.array([40, 30, 20]) * tint).astype(np.uint8)
    for centre, axes, angle, thick in rims:
        cv2.ellipse(out, centre, axes, angle, 0, 360, (20, 20, 25), thick)
    thick = rims[0][3]
    cv2.line(out, tuple(int(v) for v in p[133]), tuple(int(v) for v in p[362]), (20, 20, 25), thick)
    for eye, temple in ((33, 127), (263, 356)):
        cv2.line(out, tuple(int(v) for v in p[eye]), tuple(int(v) for v in p[temple]), (20, 20, 25), thick)
    return out


def test_glasses_still_give_the_whole_head(tmp_path):
    """Issue 12's bad input: glasses. No clip here has them, so the sample woman wears drawn ones
    (draw_glasses: dark frames, tinted lenses, arms), placed per frame from her tracked eye corners.
    The build must keep tracking her, fit the whole head and score in her source view like the
    plain clip; the glasses become part of her texture (they are on her face in every frame).
    Measured: 144 of 236 frames kept (145 plain), mattes all usable, IoU 0.896 (0.910 plain), PSNR
    19.50 dB against 14.57 for the face mesh alone; with the refinement IoU 0.921."""
    from inference.features.face_tracker import FaceTracker
    from tools import cli

    clip = tmp_path / "glasses.mp4"
    tracker = FaceTracker()
    try:
        def wear(frame):
            face = tracker.track(frame)
            return frame if face is None else draw_glasses(frame, face.landmarks_px)

        _edited_sample(clip, wear)
    finally:
        tracker.close()
    out = _quick_avatar_of(clip)
    raw = json.loads((out / "avatar.json").read_text())
    wh, kept = raw["whole_head"], raw["build"]["kept"]
    assert wh["status"] == "fitted" and wh["mattes"]["usable"] >= 0.9 * wh["mattes"]["frames"], wh
    assert kept >= 120, raw["build"]  # the plain clip keeps 145 of 236 (--quick)
    js = tmp_path / "app.json"
    assert cli.main(["eval", "appearance", "--avatar", str(out), "--video", str(clip), "--json", str(js),
                     "--max-frames", "12"]) == 0
    m = json.loads(js.read_text())["models"]
    assert m["whole"]["iou"] >= 0.85 and m["whole"]["psnr_db"] > m["face_only"]["psnr_db"] + 3, m


def test_gutters_carry_their_islands_colour(package_dir):
    """The atlas's gutters (texels of no triangle) next to an island hold that island's colour, so
    a bilinear sample at its border does not mix in the other side: the shell's first ring borders
    the gutter under the face island's chin, and its diffused mix of both showed as a thin light
    seam along the forehead (texture_unwrap.dilate_islands, builder 10). Measured on the decoded
    idle texture of the quick build: 5.8 grey levels from the nearest island texel (12.1 before)."""
    import cv2

    from inference.engine.package_loader import idle_face
    from inference.head_model.texture_unwrap import dilate_islands
    from inference.head_model.uv_atlas import texel_table

    pkg = AvatarPackage.load(package_dir)
    texture, _ = idle_face(pkg)
    n_face = pkg.manifest.raw["whole_head"]["n_face_triangles"]
    covered = texel_table(pkg.mesh.uvs, pkg.mesh.indices.astype(np.int64), texture.shape[0], n_face).covered
    border = cv2.dilate(covered.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~covered
    island = dilate_islands(texture[..., :3], covered)  # each gutter texel: its nearest island texel
    diff = np.abs(texture[..., :3][border].astype(int) - island[border]).mean()
    assert border.sum() > 100 and diff < 9.0, diff


def test_dilate_islands_fills_each_gutter_texel_from_the_nearest_island():
    from inference.head_model.texture_unwrap import dilate_islands

    image = np.zeros((6, 9, 3), np.float32)
    covered = np.zeros((6, 9), bool)
    covered[:, :3], covered[:, 6:] = True, True
    image[:, :3], image[:, 6:] = (200, 10, 10), (10, 10, 200)
    out = dilate_islands(image, covered)
    assert (out[:, 3] == (200, 10, 10)).all() and (out[:, 5] == (10, 10, 200)).all()
    assert (out[covered] == image[covered]).all()
