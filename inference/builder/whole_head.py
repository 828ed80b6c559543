"""Stage ``whole_head``: head mattes of the kept frames and the head shell carved from them.

Mattes: MediaPipe selfie segmentation (pinned wheel) per kept frame, refined around the head
(``head_model/matte.py``); frames with a hand over the face were already rejected by ``select``.
Shell: ``head_model/head_shell.carve_shell`` over the training frames' tracked poses. When the
mattes are unusable (no person segmented, a person far away, segmentation that misses the face,
a matte no larger than the face) the stage records why and the build falls back to the
face-and-skull model (the procedural closure), which the manifest's ``whole_head`` block says.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.head_closure import fit_head_shape
from inference.head_model.head_shell import HeadShell, ShellFrame, carve_shell
from inference.head_model.matte import MatteConfig, PersonSegmenter, head_matte, matte_quality
from inference.head_model.topology import NUM_MESH_POINTS
from inference.head_model.whole_head import WholeHeadConfig

from .cache import StageCache, builder_stage_key
from .progress import progress
from .select import SelectedFrames
from .sources import Source
from .track import Tracks, decode_frames

MIN_GOOD_SHARE = 0.5  # at least this share of the kept frames must have a usable head matte
# Bump when carve_shell changes (the stage key holds it, so old work directories rerun the stage).
SHELL_ALGORITHM = 3


@dataclass(frozen=True)
class WholeHeadInput:
    sources: tuple[Source, ...]
    tracks: Tracks
    selection: SelectedFrames
    config: WholeHeadConfig


@dataclass(frozen=True, eq=False)
class WholeHead:
    key: str
    info: dict  # status ("fitted" / "fallback" / "off"), reason, matte statistics, inferred share
    shell: HeadShell | None  # None: fall back to the procedural skull
    mattes: np.ndarray | None  # (n_kept, H, W) uint8 soft head matte ×255, rows = selection.kept
    kept: np.ndarray  # (n_kept,) global frames


def compute_mattes(sources, tracks: Tracks, kept: np.ndarray, config: MatteConfig,
                   bar=None) -> tuple[np.ndarray, list]:
    """Soft head mattes (uint8 ×255) of the global frames ``kept`` and each one's quality."""
    first = sources[0]
    mattes = np.zeros((len(kept), first.height, first.width), np.uint8)
    quality: list = [None] * len(kept)
    slot = {int(g): j for j, g in enumerate(kept)}
    with PersonSegmenter(config) as seg:
        for g, frame in decode_frames(sources, tracks, kept):
            if frame.shape[:2] != mattes.shape[1:]:
                quality[slot[g]] = None  # a second video of another size: not used for the shell
            else:
                m = head_matte(seg.person(frame), tracks.px[g], config.threshold)
                mattes[slot[g]] = np.round(m * 255).astype(np.uint8)
                quality[slot[g]] = matte_quality(m, tracks.px[g], config.threshold)
            if bar is not None:
                bar.update(1)
    return mattes, quality


def fit_whole_head(cache: StageCache, inp: WholeHeadInput) -> WholeHead:
    sel, cfg = inp.selection, inp.config
    key = builder_stage_key("whole_head", {**cfg.to_dict(), "algorithm": SHELL_ALGORITHM}, [sel.key])
    kept = sel.kept

    def run(d: Path) -> dict:
        if not cfg.enabled:
            return {"status": "off", "reason": "--no-whole-head"}
        with progress(len(kept), "mattes") as bar:
            mattes, quality = compute_mattes(inp.sources, inp.tracks, kept, cfg.matte, bar)
        good = np.array([q is not None and q.ok for q in quality])
        reasons: dict[str, int] = {}
        for q in quality:
            if q is not None and not q.ok:
                reasons[q.reason] = reasons.get(q.reason, 0) + 1
        face_share = [q.face_share for q in quality if q is not None and q.ok]
        cut = {edge: sum(1 for q in quality if q is not None and q.ok and edge in q.cut_by)
               for edge in ("top", "left", "right")}
        info = {"frames": int(len(kept)), "usable_mattes": int(good.sum()), "unusable": reasons,
                "head_cut_by_frame": cut,
                "face_share_of_head_matte_median": round(float(np.median(face_share)), 3) if face_share else None}
        np.save(d / "mattes.npy", mattes)
        if good.mean() < MIN_GOOD_SHARE:
            top = max(reasons, key=reasons.get) if reasons else "no usable head matte"
            info.update(status="fallback", reason=f"{top} in {len(kept) - int(good.sum())} of {len(kept)} frames: "
                                                  "built the face-and-skull model")
            return info
        slot = {int(g): j for j, g in enumerate(kept)}
        voters = [int(g) for g in sel.train if good[slot[int(g)]]]
        if len(voters) > cfg.shell.max_frames:
            voters = [voters[i] for i in np.linspace(0, len(voters) - 1, cfg.shell.max_frames).round().astype(int)]
        thr = int(round(cfg.matte.threshold * 255))
        frames = [ShellFrame(mattes[slot[g]] >= thr, sel.rotation[g], sel.translation[g], float(sel.scale[g]),
                             inp.tracks.px[g]) for g in voters]
        neutral = sel.neutral[:NUM_MESH_POINTS].astype(np.float64)
        shell = carve_shell(fit_head_shape(neutral), frames, neutral, cfg.shell)
        save_np({"ratio": shell.ratio, "inferred": shell.inferred.astype(np.uint8)}, str(d / "shell.safetensors"))
        info.update(status="fitted", reason="", voting_frames=len(voters),
                    inferred_share_of_sphere=round(shell.inferred_fraction(), 3),
                    ratio_range=[round(float(shell.ratio.min()), 3), round(float(shell.ratio.max()), 3)])
        return info

    info = cache.run("whole_head", key, run)
    d = cache.work / "whole_head"
    mattes = np.load(d / "mattes.npy", allow_pickle=False) if (d / "mattes.npy").is_file() and cfg.enabled else None
    shell = None
    if info.get("status") == "fitted":
        a = load_np(str(d / "shell.safetensors"))
        neutral = sel.neutral[:NUM_MESH_POINTS].astype(np.float64)
        shell = HeadShell(fit_head_shape(neutral), a["ratio"], a["inferred"].astype(bool))
    return WholeHead(key, info, shell, mattes, kept)


def whole_head_block(whole: WholeHead, mesh) -> dict:
    """The manifest's ``whole_head`` block: what the package's head is made of, and what of it was
    inferred rather than seen."""
    info = whole.info
    status = info.get("status", "off")
    contains = ["face (tracked)"]
    cut = info.get("head_cut_by_frame") or {}
    usable = max(int(info.get("usable_mattes") or 0), 1)
    out_of_frame = [edge for edge, n in cut.items() if n >= 0.5 * usable]
    if status == "fitted":
        contains += ["hair volume and outline, ears, sides and top (carved from head mattes)",
                     "back of the head (inferred: completed from the sides)", "neck stub (inferred: prior)"]
        contains += [f"the head beyond the frame's {edge} edge (inferred: skull prior; it leaves the frame in "
                     f"{cut[edge]} of {usable} frames)" for edge in out_of_frame]
    else:
        contains += ["procedural skull and neck stub (face-and-skull model)"]
    return {"status": status, "reason": info.get("reason", ""), "contains": contains,
            "n_face_triangles": int(mesh.n_face_triangles),
            "inferred_share_of_sphere": info.get("inferred_share_of_sphere"),
            "mattes": {"frames": info.get("frames"), "usable": info.get("usable_mattes"),
                       "unusable": info.get("unusable", {}), "head_cut_by_frame": cut,
                       "face_share_of_head_matte_median": info.get("face_share_of_head_matte_median")}}
