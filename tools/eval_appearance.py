"""`headcast eval appearance`: does the avatar look like the person, seen from the source camera?

On the avatar's held-out frames (never trained on) of its own clip: the clip's tracker gives each
frame's head pose and expression features; the avatar is driven exactly as a stream would drive it
(the streaming engine: animation network → VAE decoder → texture and blendshape weights), placed
with the tracked pose and rendered in the source camera's view (software rasteriser, 2×2
supersampled). It is compared with the source over the person's *head region*: the head matte
(selfie segmentation above the chin line, head_model/matte.py) and the avatar's alpha, both cut
by the same chin half-plane.

* silhouette IoU of the avatar's alpha (≥ 0.5) against the source head matte (≥ 0.5);
* PSNR / SSIM of the premultiplied colours (avatar × alpha vs source × matte) over the union of
  both mattes, so missing hair counts as error;
* still-head shimmer: mean absolute frame-to-frame change inside the silhouette while one held-out
  frame's features are repeated (a still driver).

Every model is measured in the same run on the same frames: the avatar (``whole``), its face mesh
alone (``face_only``: the avatar's tracked-face triangles, what today's mask shows of the person
against the matte), optionally a second package (``--baseline``, e.g. the same clip built with
``--no-whole-head``: today's face-and-skull model) and, when the package carries one, the avatar
with its screen-space refinement (``refined``).

Lives in tools/ because it joins the engine (inference) with the clip's tracking and mattes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import HeadcastError

STREAM = "eval"
TARGETS = {"iou": 0.92, "psnr_gain_db": 3.0}


@dataclass(frozen=True)
class AppearanceConfig:
    avatar: Path
    video: Path
    baseline: Path | None = None
    video_out: Path | None = None
    max_frames: int = 0  # 0: every held-out frame
    still_frames: int = 12
    supersample: int = 2


class DrivenAvatar:
    """One package driven by its own streaming engine; renders in the source camera's view."""

    def __init__(self, path: Path, label: str, face_only: bool = False, package=None):
        from inference.avatar_package import AvatarPackage, AvatarPackageError, CANONICAL_UNIT_M
        from inference.engine.package_loader import avatar_model_from_package

        try:
            self.pkg = package if package is not None else AvatarPackage.load(path)
            self.model = avatar_model_from_package(self.pkg)
        except (AvatarPackageError, ValueError) as exc:
            raise HeadcastError(str(exc)) from exc
        self.label = label
        m = self.pkg.mesh
        self.positions = m.positions / CANONICAL_UNIT_M
        self.blendshapes = m.blendshapes / CANONICAL_UNIT_M
        self.uvs = m.uvs
        faces = m.indices.astype(np.int64)
        self.faces = faces[(faces < 468).all(1)] if face_only else faces
        self.engine = None

    def reset(self) -> None:
        from inference.engine.engine import EngineConfig, StreamingEngine

        self.engine = StreamingEngine({STREAM: self.model}, EngineConfig(device="cpu", threads=1))

    def step(self, i: int, features, t_ns: int):
        from streaming.protocol import FeatureFrame, FeatureKind, Flags

        frame = FeatureFrame(STREAM, i, FeatureKind.MP478,
                             np.zeros((478, 3), np.float32) if features is None else features, t_ns, t_ns,
                             flags=Flags.FACE_LOST if features is None else Flags.NONE)
        return self.engine.step({STREAM: [frame]}, now_ns=t_ns)[STREAM]

    def render(self, state, pose, height: int, width: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
        from inference.head_model.render import render_in_view

        w = np.asarray(state.weights, np.float32)
        verts = self.positions + np.einsum("k,kvc->vc", w, self.blendshapes)
        px = pose.scale * verts @ pose.rotation.T + pose.translation
        return render_in_view(px, self.faces, self.uvs, np.asarray(state.texture), height, width, supersample)


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mx, my = blur(a), blur(b)
    sxx, syy, sxy = blur(a * a) - mx * mx, blur(b * b) - my * my, blur(a * b) - mx * my
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx * mx + my * my + c1) * (sxx + syy + c2))
    return s.mean(-1)


def frame_scores(rgb: np.ndarray, alpha: np.ndarray, src_rgb: np.ndarray, matte: np.ndarray,
                 region: np.ndarray) -> dict:
    """One frame: avatar premultiplied rgb/alpha vs source rgb (float [0,1]) with its soft matte."""
    a = alpha * region
    m = matte * region
    sil_a, sil_m = a >= 0.5, m >= 0.5
    union = sil_a | sil_m
    inter = sil_a & sil_m
    n_union = max(int(union.sum()), 1)
    iou = float(inter.sum() / n_union)
    pred = rgb * region[..., None]
    target = src_rgb * m[..., None]
    mse = float(((pred - target) ** 2)[union].mean()) if union.any() else 0.0
    psnr = 10 * np.log10(1.0 / max(mse, 1e-10))
    ssim = float(_ssim_map(pred.astype(np.float32), target.astype(np.float32))[union].mean()) if union.any() else 1.0
    # Where the silhouette errs, as shares of the union: drawn beyond the person's head ("over"),
    # and the head left uncovered ("under"); 1 − IoU = over + under.
    over = float((sil_a & ~sil_m).sum() / n_union)
    under = float((sil_m & ~sil_a).sum() / n_union)
    return {"iou": iou, "psnr_db": float(psnr), "ssim": ssim, "over": over, "under": under}


def _summary(rows: list[dict]) -> dict:
    return {k: round(float(np.mean([r[k] for r in rows])), 4) for k in rows[0]} if rows else {}


def evaluate_appearance(cfg: AppearanceConfig, progress=None) -> dict:

    from inference.animation.serialize import TARGET_NEUTRAL
    from inference.features.alignment import to_canonical
    from inference.head_model.matte import PersonSegmenter, above_chin, head_matte
    from media.video_writer import Mp4Writer
    from tools.eval_transfer import DriverTrack, driver_features, holdout_ranges, track_driver

    whole = DrivenAvatar(cfg.avatar, "whole")
    models = [whole, DrivenAvatar(cfg.avatar, "face_only", face_only=True, package=whole.pkg)]
    if cfg.baseline is not None:
        models.append(DrivenAvatar(cfg.baseline, "baseline"))
    refined = _refined_model(whole)
    try:
        ranges = holdout_ranges(cfg.avatar, cfg.video)
    except (OSError, KeyError, ValueError) as exc:
        raise HeadcastError(f"{cfg.avatar}: no held-out frames to score in {cfg.video} ({exc})") from exc
    if TARGET_NEUTRAL not in whole.pkg.extra_tensors:
        raise HeadcastError(f"{cfg.avatar} stores no target neutral: rebuild it with headcast build-avatar")
    neutral = whole.pkg.extra_tensors[TARGET_NEUTRAL].numpy()
    track = track_driver(cfg.video, keep_frames=True)
    feats, _, _ = driver_features(DriverTrack(track.landmarks, [], track.fps), None, neutral)
    n = len(track.landmarks)
    wanted = [i for lo, hi in ranges for i in range(lo, min(hi, n)) if track.landmarks[i] is not None]
    if cfg.max_frames and len(wanted) > cfg.max_frames:
        wanted = [wanted[j] for j in np.linspace(0, len(wanted) - 1, cfg.max_frames).round().astype(int)]
    if not wanted:
        raise HeadcastError(f"no held-out frame of {cfg.video} has a tracked face")
    wanted_set = set(wanted)
    period = int(1e9 / track.fps)
    rows: dict[str, list] = {m.label: [] for m in models}
    if refined is not None:
        rows["refined"] = []
    writer = None
    h, w = track.frames_bgr[wanted[0]].shape[:2]
    with PersonSegmenter() as seg:
        try:
            for lo, hi in ranges:
                for m in models:
                    m.reset()
                start = max(0, lo - whole.model.window)
                for i in range(start, min(hi, n)):
                    t = (i + 1) * period
                    states = [m.step(i, feats[i], t) for m in models]
                    if i not in wanted_set:
                        continue
                    px = track.landmarks[i]
                    _, pose = to_canonical(px, neutral)
                    frame = track.frames_bgr[i]
                    src = frame[:, :, ::-1].astype(np.float32) / 255.0
                    matte = head_matte(seg.person(frame), px)
                    region = above_chin((h, w), px).astype(np.float32)
                    panels = [src * matte[..., None]]
                    for m, st in zip(models, states):
                        rgb, alpha = m.render(st, pose, h, w, cfg.supersample)
                        rows[m.label].append(frame_scores(rgb, alpha, src, matte, region))
                        panels.append(rgb)
                        if m is whole and refined is not None:
                            r_rgb, r_alpha = refined(rgb, alpha)
                            rows["refined"].append(frame_scores(r_rgb, r_alpha, src, matte, region))
                            panels.append(r_rgb)
                    if cfg.video_out is not None:
                        if writer is None:
                            writer = Mp4Writer(cfg.video_out, nominal_fps=track.fps)
                        side = np.concatenate(panels, axis=1)
                        writer.write(np.ascontiguousarray((np.clip(side, 0, 1) * 255).astype(np.uint8)), t,
                                     pixel_format="rgb24")
                    if progress:
                        progress(sum(len(v) for v in rows.values()) // len(rows), len(wanted))
        except BaseException:
            if writer is not None:
                writer.abort()
                writer = None
            raise
        finally:
            if writer is not None:
                writer.close()
    shimmer = _still_shimmer(models, refined, feats, wanted[len(wanted) // 2], track, neutral, period,
                             cfg.still_frames, cfg.supersample)
    summary = {k: _summary(v) for k, v in rows.items()}
    best = "refined" if "refined" in summary and summary["refined"]["psnr_db"] > summary["whole"]["psnr_db"] \
        else "whole"
    gains = {f"psnr_gain_db_vs_{k}": round(summary[best]["psnr_db"] - summary[k]["psnr_db"], 3)
             for k in summary if k not in ("whole", "refined")}
    met = {"iou": summary[best]["iou"] >= TARGETS["iou"],
           "psnr_gain_db": gains.get("psnr_gain_db_vs_baseline", gains["psnr_gain_db_vs_face_only"])
           >= TARGETS["psnr_gain_db"],
           "shimmer": shimmer[best] <= shimmer["face_only"] + 1e-6}
    return {"evaluation": "appearance", "avatar": str(cfg.avatar), "video": str(cfg.video),
            "baseline": str(cfg.baseline) if cfg.baseline else None,
            "ranges": [list(r) for r in ranges], "scored_frames": len(wanted), "size": [w, h],
            "models": summary, "best": best, "gains": gains, "still_shimmer": shimmer,
            "targets": {**TARGETS, "met": met}, "video_out": str(cfg.video_out) if cfg.video_out else None,
            "series": {k: v for k, v in rows.items()}, "frames": wanted}


def _refined_model(whole: DrivenAvatar):
    """The package's screen-space refinement as ``f(rgb, alpha) -> (rgb, alpha)``, or None."""
    try:
        from inference.head_model.refinement import refinement_from_package
    except ImportError:
        return None
    return refinement_from_package(whole.pkg)


def _still_shimmer(models, refined, feats, i: int, track, neutral, period: int, n: int, ss: int) -> dict:
    """Mean absolute frame-to-frame change (grey levels 0–255) inside the silhouette, one held-out
    frame's features repeated ``n`` times (after the stream's warm-up) with its tracked pose."""
    from inference.features.alignment import to_canonical

    _, pose = to_canonical(track.landmarks[i], neutral)
    h, w = track.frames_bgr[i].shape[:2]
    out = {}
    for m in models:
        m.reset()
        prev, prev_r, diffs, diffs_r = None, None, [], []
        for k in range(m.model.window + n):
            st = m.step(k, feats[i], (k + 1) * period)
            if k < m.model.window:
                continue
            rgb, alpha = m.render(st, pose, h, w, ss)
            if prev is not None:
                sil = (alpha >= 0.5) | (prev[1] >= 0.5)
                diffs.append(float(np.abs(rgb - prev[0])[sil].mean() * 255) if sil.any() else 0.0)
            prev = (rgb, alpha)
            if m.label == "whole" and refined is not None:
                r = refined(rgb, alpha)
                if prev_r is not None:
                    sil = (r[1] >= 0.5) | (prev_r[1] >= 0.5)
                    diffs_r.append(float(np.abs(r[0] - prev_r[0])[sil].mean() * 255) if sil.any() else 0.0)
                prev_r = r
        out[m.label] = round(float(np.mean(diffs)), 4) if diffs else 0.0
        if diffs_r:
            out["refined"] = round(float(np.mean(diffs_r)), 4)
    return out
