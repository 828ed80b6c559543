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


def driver_features(track: DriverTrack, neutral_file: Path | None = None, neutral: np.ndarray | None = None):
    """Features exactly as the capture node makes them: against ``neutral`` or a neutral file when
    given, else the neutral its online estimator settles on from the clip's first seconds (frozen after)."""
    from calibration.neutral import NeutralError, NeutralFace, OnlineNeutralEstimator
    from inference.features.mp478 import Mp478Extractor

    ex = Mp478Extractor()
    if neutral is not None:
        neutral = np.asarray(neutral, np.float32)
    elif neutral_file is not None:
        try:
            neutral = NeutralFace.load(neutral_file).canonical
        except NeutralError as exc:
            raise HeadcastError(str(exc)) from exc
    else:
        online = OnlineNeutralEstimator(source="eval driver")
        for m in track.landmarks:
            if m is not None:
                online.update(ex.canonical(m)[0])
                if online.converged:
                    break
        if online.estimate is None:
            raise HeadcastError("driver clip: no face found in any frame")
        neutral = online.estimate.canonical
    ex.neutral = neutral
    feats, canons = [], []
    for m in track.landmarks:
        if m is None:
            feats.append(None)
            canons.append(None)
            continue
        r = ex.extract(m)
        feats.append(r.features)
        canons.append(r.canonical)
    return feats, canons, neutral


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

    def render(self, texture: np.ndarray, weights: np.ndarray) -> np.ndarray:
        from xr_runtime.gl.renderer import AvatarDrawState

        if self.handle is None:
            self.handle = self.renderer.add_avatar(self.mesh, texture_size=texture.shape[:2])
        state = AvatarDrawState(self.handle, np.eye(4, dtype=np.float32), weights, texture)
        self.renderer.draw(self.view, self.proj, [state], self.target)
        rgba = self.target.read_rgba()
        return np.ascontiguousarray(rgba[:, :, 2::-1])  # BGR for the tracker and OpenCV

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
    feats, driver_canon, driver_neutral = driver_features(track, cfg.neutral, target_neutral)
    kind = FeatureKind.MP478
    if cfg.via != "mp478":
        if cfg.via not in pkg.feature_kinds and "expr52" not in pkg.feature_kinds:
            raise HeadcastError(f"{cfg.avatar} accepts {', '.join(pkg.feature_kinds)}; --via {cfg.via} needs expr52 "
                                "(rebuild the avatar with this version)")
        from capture.interop.route import through
        from inference.features.expr52 import expr52_frame

        kind = FeatureKind.EXPR52
        feats = [None if c is None else through(cfg.via, expr52_frame(c, driver_neutral), i)
                 for i, c in enumerate(driver_canon)]
    m = pkg.mesh
    renderer = FrontalAvatarRenderer(AvatarMeshData(m.positions, m.uvs, m.indices, m.blendshapes), cfg.size)
    writer = None
    period = int(1e9 / track.fps)
    d_sig, a_sig, found, segment, scored = [], [], [], [], []
    total = sum(hi - lo for lo, hi in ranges)
    try:
        with FaceTracker() as avatar_tracker:
            for seg, (start, end) in enumerate(ranges):
                # A fresh stream per range, warmed up on the frames before it as a live stream would be.
                engine = StreamingEngine({STREAM: model}, EngineConfig(device="cpu", threads=1))
                for i in range(max(0, start - model.window), end):
                    t = (i + 1) * period
                    f = feats[i]
                    frame = FeatureFrame(STREAM, i, kind,
                                         np.zeros(FEATURE_SHAPES[kind], np.float32) if f is None else f, t, t,
                                         flags=Flags.FACE_LOST if f is None else Flags.NONE)
                    state = engine.step({STREAM: [frame]}, now_ns=t)[STREAM]
                    image = renderer.render(np.asarray(state.texture), np.asarray(state.weights, np.float32))
                    if i < start:
                        continue
                    obs = avatar_tracker.track(image)
                    found.append(obs is not None)
                    a_sig.append(signals_of(None if obs is None else to_canonical(obs.landmarks_px)[0]))
                    d_sig.append(signals_of(driver_canon[i]))
                    segment.append(seg)
                    scored.append(i)
                    if cfg.video is not None:
                        drv = track.frames_bgr[i]
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
        # Per scored frame (NaN where a face was missing): for plots and for checking a number.
        "series": {"frame": scored,
                   "driver": {name: _finite_or_none(d[:, k]) for k, name in enumerate(SIGNALS)},
                   "avatar": {name: _finite_or_none(a[:, k]) for k, name in enumerate(SIGNALS)}},
    }


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
