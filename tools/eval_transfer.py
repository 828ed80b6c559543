"""`headcast eval transfer`: does the driver's expression arrive on the avatar?

driver video → the capture node's tracker and features → the streaming engine (the avatar's
animation network and decoder) → the runtime's renderer, headless and frontal → the *same* face
tracker on the rendered avatar → the same expression signals for driver and avatar → agreement
per signal (Pearson r, normalised MAE, lag), jitter where the driver holds still, and the share
of avatar frames in which a face was found. `--video` writes driver and avatar side by side.

Lives in tools/ because it joins the inference side (engine) and the runtime (renderer).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import HeadcastError

log = logging.getLogger(__name__)

SIGNALS = ("mouth_open", "jaw_open", "smile_width", "eye_open_right", "eye_open_left", "brow_raise")
STREAM = "eval"


@dataclass(frozen=True)
class EvalConfig:
    avatar: Path
    driver: Path
    start: int = 0  # first scored driver frame
    end: int | None = None  # one past the last scored frame
    # Several scored ranges [(start, end), ...] instead (the avatar's held-out blocks); each is
    # driven as a stream that starts `window` frames before it.
    ranges: tuple[tuple[int, int], ...] | None = None
    size: int = 384  # rendered avatar image (square)
    max_lag: int = 8
    video: Path | None = None
    video_codec: str = "h264"  # media.video_writer codec of `video` (mp4v: the old MPEG-4 Part 2)
    neutral: Path | None = None  # driver neutral file (headcast calibrate neutral); None: online estimate
    # Self-reenactment: measure the driver (the avatar's own training clip) against the target's
    # relaxed face stored in the package, exactly as its training features were measured.
    target_neutral: bool = False
    eyes: bool = True  # the driver's lids and gaze on the avatar (False: the network's own eyes)
    # Robustness and synthetic eye cases (issue 13): drop the driver's first frames (start mid-smile),
    # resample the driver to another frame rate, edit its landmarks (wink-right, wink-left, gaze-sweep).
    driver_start: int = 0
    driver_fps: float | None = None
    edit: str | None = None
    driver_config: object | None = None  # capture.driver_features.DriverConfig (None: the capture node's)
    # What carries the driver's expression to the avatar: mp478 (direct), expr52 (the named space on
    # our wire), or an ecosystem format's bytes (livelink, vmc, osc = Unified Expressions), each
    # decoded back into expr52 (capture/interop/route.py).
    via: str = "mp478"


@dataclass
class DriverTrack:
    landmarks: list  # per frame (478, 3) px or None
    frames_bgr: list  # kept only when a video is written
    fps: float


def track_driver(path: Path, keep_frames: bool, progress=None) -> DriverTrack:
    """Every frame's landmarks; `progress(done, total or None)` after each frame."""
    import cv2

    from capture.sources import SourceConfig, SourceError, open_source
    from inference.features.face_tracker import FaceTracker

    try:
        source = open_source(SourceConfig(str(path)))
    except SourceError as exc:
        raise HeadcastError(str(exc)) from exc
    marks, frames = [], []
    with source, FaceTracker() as tracker:
        try:
            for frame in source:
                obs = tracker.track(frame.image)
                marks.append(None if obs is None else obs.landmarks_px)
                if keep_frames:
                    frames.append(frame.image)
                if progress:
                    progress(len(marks), getattr(source, "frame_count", None))
        except SourceError as exc:
            if not marks:
                raise HeadcastError(str(exc)) from exc
            # A clip that ends a few frames early is still worth evaluating on what did decode.
            log.warning("%s; evaluating the %d frames that decoded", exc, len(marks))
        fps = source.fps or float(cv2.CAP_PROP_FPS)
    return DriverTrack(marks, frames, fps if fps and fps > 1 else 30.0)


def driver_features(track: DriverTrack, neutral_file: Path | None = None, neutral: np.ndarray | None = None,
                    config=None, expr52_out: list | None = None):
    """Features exactly as the capture node makes them (``capture.driver_features``: online neutral,
    per-region smoothing on the frame times, per-driver range), against ``neutral`` or a neutral file
    when given. ``neutral`` (the target's own relaxed face, self-reenactment) also turns the range
    off: her training features were measured without one. Returns (features, canonicals, the neutral
    at the end). ``expr52_out``, when given, receives each frame's ARKit-52 payload as the capture node
    measures it (None where no face)."""
    from calibration.neutral import NeutralError, NeutralFace
    from capture.driver_features import DriverConfig, DriverFeatures

    config = config or DriverConfig()
    fixed = None
    if neutral is not None:
        fixed = NeutralFace(np.asarray(neutral, np.float32), 0, 0, method="given")
        config = DriverConfig(**{**config.__dict__, "use_range": False})
    elif neutral_file is not None:
        try:
            fixed = NeutralFace.load(neutral_file)
        except NeutralError as exc:
            raise HeadcastError(str(exc)) from exc
    driver = DriverFeatures(config, fixed, source="eval driver")
    feats, canons = [], []
    for i, m in enumerate(track.landmarks):
        r = None
        if m is not None:
            try:
                r = driver.process(m, i / track.fps)
            except ValueError:
                r = None
        if r is None:
            driver.face_lost()
            feats.append(None)
            canons.append(None)
            if expr52_out is not None:
                expr52_out.append(None)
            continue
        feats.append(r.features)
        canons.append(r.canonical)
        if expr52_out is not None:
            expr52_out.append(driver.expr52(r))
    if driver.neutral is None:
        raise HeadcastError("driver clip: no face found in any frame")
    return feats, canons, driver.neutral.canonical


class FrontalAvatarRenderer:
    """The runtime's renderer on a headless EGL context, camera straight in front of the face."""

    def __init__(self, mesh, size: int):
        from geometry import transforms
        from xr_runtime.gl.egl_context import HeadlessGLContext
        from xr_runtime.gl.renderer import Renderer, SceneStyle
        from xr_runtime.gl.target import RenderTarget

        self.ctx = HeadlessGLContext()
        self.renderer = Renderer(SceneStyle(sky_horizon=(0.18, 0.18, 0.2), show_sky=False, show_room=False))
        self.target = RenderTarget(size, size)
        self.handle = None
        self.mesh = mesh
        lo, hi = mesh.positions.min(0), mesh.positions.max(0)
        face = mesh.positions[mesh.positions[:, 2] > np.median(mesh.positions[:, 2])]
        centre = np.array([(lo[0] + hi[0]) / 2, face[:, 1].mean(), 0.0])
        height = float(hi[1] - lo[1])
        fov = 30.0
        dist = 0.62 * height / np.tan(np.radians(fov / 2))
        self.view = transforms.look_at((centre[0], centre[1], hi[2] + dist), (centre[0], centre[1], 0.0))
        self.proj = transforms.projection_symmetric(fov, 1.0, 0.01, 10.0)

    def render(self, texture: np.ndarray, weights: np.ndarray, eyes=None) -> np.ndarray:
        from xr_runtime.gl.renderer import AvatarDrawState

        if self.handle is None:
            self.handle = self.renderer.add_avatar(self.mesh, texture_size=texture.shape[:2])
        state = AvatarDrawState(self.handle, np.eye(4, dtype=np.float32), weights, texture, eyes=eyes)
        self.renderer.draw(self.view, self.proj, [state], self.target)
        rgba = self.target.read_rgba()
        return np.ascontiguousarray(rgba[:, :, 2::-1])  # BGR for the tracker and OpenCV

    def set_eye_texture(self, texture: np.ndarray) -> None:
        if self.handle is None:
            self.handle = self.renderer.add_avatar(self.mesh, texture_size=texture.shape[:2])
        self.renderer.set_eye_texture(self.handle, texture)

    def close(self) -> None:
        self.target.delete()
        self.renderer.close()
        self.ctx.close()


def signals_of(canonical: np.ndarray | None) -> np.ndarray:
    from inference.features.expression_signals import compute_signals

    if canonical is None:
        return np.full(len(SIGNALS), np.nan)
    s = compute_signals(canonical)
    return np.array([getattr(s, n) for n in SIGNALS])


def evaluate(cfg: EvalConfig, progress=None, track_progress=None) -> dict:
    """`track_progress(done, total)` while the driver is tracked, `progress(done, total)` while
    the avatar is driven and scored."""
    import cv2

    from inference.avatar_package import AvatarPackage, AvatarPackageError
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.package_loader import PACKAGE_NETWORK, avatar_model_from_package
    from inference.evaluation.transfer_metrics import agreement, jitter, still_mask
    from inference.features.alignment import to_canonical
    from inference.features.face_tracker import FaceTracker
    from media.video_writer import Mp4Writer, VideoConfig
    from streaming.protocol import FEATURE_SHAPES, FeatureFrame, FeatureKind, Flags
    from xr_runtime.avatars.mesh import AvatarMeshData

    try:
        pkg = AvatarPackage.load(cfg.avatar)  # once: loading reads and hashes every file
        model, note = avatar_model_from_package(pkg), PACKAGE_NETWORK
    except (AvatarPackageError, ValueError) as exc:
        raise HeadcastError(str(exc)) from exc
    track = track_driver(cfg.driver, keep_frames=cfg.video is not None, progress=track_progress)
    from tools.eval_driver_edits import edit_track, resample_track

    if cfg.driver_start:
        track = DriverTrack(track.landmarks[cfg.driver_start:], track.frames_bgr[cfg.driver_start:], track.fps)
    if cfg.driver_fps:
        track = resample_track(track, cfg.driver_fps)
    edit_frames = None
    if cfg.edit:
        track, edit_frames = edit_track(track, cfg.edit)
    n = len(track.landmarks)
    ranges = cfg.ranges if cfg.ranges is not None else ((cfg.start, n if cfg.end is None else cfg.end),)
    ranges = tuple((int(lo), min(int(hi), n)) for lo, hi in ranges)
    for lo, hi in ranges:
        if not (0 <= lo < hi):
            raise HeadcastError(f"frame range {lo}..{hi} is empty (driver has {n} frames)")
    target_neutral = None
    if cfg.target_neutral:
        from inference.animation.serialize import TARGET_NEUTRAL

        if TARGET_NEUTRAL not in pkg.extra_tensors:
            raise HeadcastError(f"{cfg.avatar} stores no target neutral (built before it was kept): rebuild it, "
                           "or pass --neutral")
        target_neutral = pkg.extra_tensors[TARGET_NEUTRAL].numpy()
    expr = [] if cfg.via != "mp478" else None
    feats, driver_canon, _ = driver_features(track, cfg.neutral, target_neutral, cfg.driver_config, expr52_out=expr)
    kind = FeatureKind.MP478
    if cfg.via != "mp478":
        if cfg.via not in pkg.feature_kinds and "expr52" not in pkg.feature_kinds:
            raise HeadcastError(f"{cfg.avatar} accepts {', '.join(pkg.feature_kinds)}; --via {cfg.via} needs expr52 "
                                "(rebuild the avatar with this version)")
        from capture.interop.route import through

        kind = FeatureKind.EXPR52
        feats = [None if e is None else through(cfg.via, e, i) for i, e in enumerate(expr)]
    m = pkg.mesh
    renderer = FrontalAvatarRenderer(AvatarMeshData(m.positions, m.uvs, m.indices, m.blendshapes), cfg.size)
    writer = None
    period = int(1e9 / track.fps)
    d_sig, a_sig, found, segment, scored = [], [], [], [], []
    d_gaze, a_gaze = [], []
    total = sum(hi - lo for lo, hi in ranges)
    try:
        with FaceTracker() as avatar_tracker:
            for seg, (start, end) in enumerate(ranges):
                # A fresh stream per range, warmed up on the frames before it as a live stream would be.
                engine = StreamingEngine({STREAM: model}, EngineConfig(device="cpu", threads=1))
                if cfg.eyes and seg == 0:
                    # Before any frame the engine shows her relaxed face: its eyes are the rig's open eyes.
                    relaxed = engine.step({STREAM: []}, now_ns=0)[STREAM]
                    renderer.set_eye_texture(np.asarray(relaxed.texture))
                for i in range(max(0, start - model.window), end):
                    t = (i + 1) * period
                    f = feats[i]
                    frame = FeatureFrame(STREAM, i, kind,
                                         np.zeros(FEATURE_SHAPES[kind], np.float32) if f is None else f, t, t,
                                         flags=Flags.FACE_LOST if f is None else Flags.NONE)
                    state = engine.step({STREAM: [frame]}, now_ns=t)[STREAM]
                    image = renderer.render(np.asarray(state.texture), np.asarray(state.weights, np.float32),
                                            state.eyes if cfg.eyes else None)
                    if i < start:
                        continue
                    obs = avatar_tracker.track(image)
                    found.append(obs is not None)
                    a_can = None if obs is None else to_canonical(obs.landmarks_px)[0]
                    a_sig.append(signals_of(a_can))
                    d_sig.append(signals_of(driver_canon[i]))
                    a_gaze.append(gaze_of(a_can))
                    d_gaze.append(gaze_of(driver_canon[i]))
                    segment.append(seg)
                    scored.append(i)
                    if cfg.video is not None:
                        drv = track.frames_bgr[i]
                        if cfg.edit and track.landmarks[i] is not None:
                            drv = mark_edit(drv, track.landmarks[i], cfg.edit)
                        scale = cfg.size / drv.shape[0]
                        drv = cv2.resize(drv, (int(drv.shape[1] * scale), cfg.size))
                        side = np.concatenate([drv, image], axis=1)
                        if writer is None:
                            writer = Mp4Writer(cfg.video, nominal_fps=track.fps,
                                               config=VideoConfig(codec=cfg.video_codec))
                        writer.write(side, t, pixel_format="bgr24")  # stamped with the driver frame's time
                    if progress:
                        progress(len(scored), total)
    except BaseException:
        if writer is not None:
            writer.abort()
            writer = None
        raise
    finally:
        renderer.close()
        if writer is not None:
            writer.close()
    d = np.array(d_sig)
    a = np.array(a_sig)
    seg_ids = np.array(segment)
    both = np.isfinite(d).all(1) & np.isfinite(a).all(1)
    if both.sum() < 8:
        raise HeadcastError(f"only {int(both.sum())} frames with a face in both driver and avatar: nothing to compare")
    sb = seg_ids[both]
    signals = {name: agreement(name, d[both, k], a[both, k], cfg.max_lag, sb).as_dict()
               for k, name in enumerate(SIGNALS)}
    still = still_mask(d[both], segments=sb)
    eyes = eye_report(d, a, np.array(d_gaze), np.array(a_gaze), both, seg_ids, cfg, edit_frames, scored)
    return {
        "avatar": str(cfg.avatar), "driver": str(cfg.driver),
        "frames": [ranges[0][0], ranges[-1][1]], "ranges": [list(r) for r in ranges],
        "scored_frames": int(both.sum()), "animation": note, "via": cfg.via,
        "avatar_face_found_fraction": float(np.mean(found)),
        "driver_face_found_fraction": float(np.isfinite(d).all(1).mean()),
        "signals": signals,
        "jitter_still_avatar": jitter(a[both], still, sb),
        "jitter_still_driver": jitter(d[both], still, sb),
        "video": str(cfg.video) if cfg.video else None,
        "eyes": eyes,
        "driver_fps": track.fps, "driver_start": cfg.driver_start, "edit": cfg.edit,
        # Per scored frame (NaN where a face was missing): for plots and for checking a number.
        "series": {"frame": scored,
                   "driver": {name: _finite_or_none(d[:, k]) for k, name in enumerate(SIGNALS)},
                   "avatar": {name: _finite_or_none(a[:, k]) for k, name in enumerate(SIGNALS)}},
    }


def mark_edit(image: np.ndarray, landmarks: np.ndarray, edit: str) -> np.ndarray:
    """The driver frame with the edited landmarks drawn on it (the edit is in the landmarks, not
    the pixels): iris centres for a gaze sweep, the lid contours for a wink."""
    import cv2

    from geometry.facemesh_eyes import EYES

    out = image.copy()
    for side in ("right", "left"):
        upper, lower, _, iris = EYES[side]
        if edit == "gaze-sweep":
            x, y = landmarks[iris[0], :2]
            cv2.circle(out, (int(round(x)), int(round(y))), 3, (0, 255, 255), -1, cv2.LINE_AA)
        elif edit.startswith("wink"):
            for ids in (upper, lower):
                pts = np.round(landmarks[list(ids), :2]).astype(np.int32)
                cv2.polylines(out, [pts], False, (0, 255, 255), 1, cv2.LINE_AA)
    return out


def gaze_of(canonical: np.ndarray | None) -> np.ndarray:
    """Mean iris offset of both eyes (x towards the subject's left, y up; half eye widths)."""
    from geometry.facemesh_eyes import EYES, iris_offset

    if canonical is None:
        return np.full(2, np.nan)
    return np.mean([iris_offset(canonical, EYES[e][2], EYES[e][3]) for e in ("right", "left")], axis=0)


def eye_report(d, a, d_gaze, a_gaze, both, seg, cfg, edit_frames, scored) -> dict:
    """Range share and blinks per eye, the wink (edit wink-*), gaze agreement."""
    from inference.evaluation.eye_metrics import blinks, range_share, wink
    from inference.evaluation.transfer_metrics import agreement

    k = {name: SIGNALS.index(name) for name in ("eye_open_right", "eye_open_left")}
    out = {}
    for side in ("right", "left"):
        dd, aa = d[:, k[f"eye_open_{side}"]], a[:, k[f"eye_open_{side}"]]
        out[f"range_share_{side}"] = range_share(dd[both], aa[both])
        out[f"blinks_{side}"] = blinks(dd, aa)
    if edit_frames is not None and cfg.edit in ("wink-right", "wink-left"):
        shut = cfg.edit.split("-")[1]
        other = "left" if shut == "right" else "right"
        lo, hi = (scored.index(f) if f in scored else None for f in edit_frames)
        if lo is not None and hi is not None:
            out["wink"] = {"eye": shut, **wink((d[:, k[f"eye_open_{shut}"]], a[:, k[f"eye_open_{shut}"]]),
                                               (d[:, k[f"eye_open_{other}"]], a[:, k[f"eye_open_{other}"]]), (lo, hi))}
    ok = both & np.isfinite(d_gaze).all(1) & np.isfinite(a_gaze).all(1)
    if ok.sum() >= 8:
        for j, axis in enumerate(("x", "y")):
            out[f"gaze_{axis}"] = agreement(f"gaze_{axis}", d_gaze[ok, j], a_gaze[ok, j], cfg.max_lag,
                                            seg[ok]).as_dict()
    return out


def _finite_or_none(x: np.ndarray) -> list:
    return [round(float(v), 5) if np.isfinite(v) else None for v in x]


def holdout_ranges(avatar: Path, driver: Path) -> tuple[tuple[int, int], ...]:
    """The avatar's held-out blocks in ``driver``, which must be one of its training clips (matched
    by sha256 against the manifest's sources), as (start, end) frame ranges of that clip."""
    import json

    from core.atomic_files import sha256_file

    raw = json.loads((Path(avatar) / "avatar.json").read_text())
    build = raw["build"]
    blocks = build.get("holdout_frame_ranges") or [build["holdout_frame_range"]]  # v4 packages: one slice
    digest = sha256_file(Path(driver))
    videos = [i for i, s in enumerate(raw["provenance"]["sources"]) if s.get("sha256") == digest]
    if not videos:
        raise ValueError(f"{driver} is not one of the clips {Path(avatar).name} was built from")

    def parse(tag: str) -> tuple[int, int]:
        video, frame = tag.split(":frame")
        return int(video.removeprefix("video")), int(frame)

    out = []
    for lo, hi in blocks:
        (v, a), (_, b) = parse(lo), parse(hi)
        if v in videos:
            out.append((a, b + 1))
    if not out:
        raise ValueError(f"no held-out block lies in {driver}")
    return tuple(out)
