"""Stage ``torso``: the shoulders and upper chest where the clip shows them (head_model/torso.py).

MediaPipe Pose and the person matte on up to ``max_frames`` kept frames spread over the clip. When
both shoulders are not shown in enough of them (the frame cuts at the chin, the person is too
close) the stage records why and the package has no torso, which the manifest's ``torso`` block
says; the head is then drawn exactly as before. Frames of a second video of another size are not
used (the body frame is measured in the first video's pixels, as the head shell is).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.avatar_package import CANONICAL_UNIT_M
from inference.head_model.gltf_io import MeshArrays, TorsoArrays
from inference.head_model.head_mesh import HeadMesh
from inference.head_model.matte import PersonSegmenter
from inference.head_model.shoulders import ShoulderTracker
from inference.head_model.topology import NUM_MESH_POINTS
from inference.head_model.torso import (NECK_PIVOT, TorsoConfig, TorsoFrame, TorsoMesh, TorsoProfile, fit_profile,
                                        neck_body_weights, pivot_px, torso_mesh, unwrap_texture)

from .cache import StageCache, builder_stage_key
from .progress import progress
from .select import SelectedFrames
from .sources import Source
from .track import Tracks, decode_frames

TORSO_ALGORITHM = 1  # bump when the fit changes (the stage key holds it)


@dataclass(frozen=True)
class TorsoInput:
    sources: tuple[Source, ...]
    tracks: Tracks
    selection: SelectedFrames
    config: TorsoConfig


@dataclass(frozen=True, eq=False)
class Torso:
    key: str
    info: dict  # status ("fitted" / "absent" / "off"), reason, frames showing both shoulders
    mesh: TorsoMesh | None  # None: no torso (the head alone, as before)
    texture: np.ndarray | None  # (S, S, 3) uint8 RGB


def _sampled(kept: np.ndarray, n: int) -> np.ndarray:
    if len(kept) <= n:
        return kept
    return kept[np.linspace(0, len(kept) - 1, n).round().astype(int)]


def fit_torso(cache: StageCache, inp: TorsoInput) -> Torso:
    sel, cfg = inp.selection, inp.config
    key = builder_stage_key("torso", {**asdict(cfg), "algorithm": TORSO_ALGORITHM}, [sel.key])
    frames = _sampled(sel.kept, cfg.max_frames)

    def run(d: Path) -> dict:
        if not cfg.enabled:
            return {"status": "off", "reason": "--no-whole-head"}
        evidence: list[TorsoFrame] = []
        images: list[np.ndarray] = []
        body_shoulders = []
        shown = 0
        with progress(len(frames), "torso") as bar, ShoulderTracker() as pose, PersonSegmenter() as seg:
            first = inp.sources[0]
            for g, image in decode_frames(inp.sources[:1], inp.tracks, frames):
                bar.update(1)
                if image.shape[:2] != (first.height, first.width):
                    continue
                s = pose.shoulders(image)
                h, w = image.shape[:2]
                if s is None or not s.shown(w, h, cfg.min_visibility):
                    continue
                shown += 1
                f = TorsoFrame(seg.person(image), sel.rotation[g], sel.translation[g], float(sel.scale[g]),
                               inp.tracks.px[g])
                q = pivot_px(f)
                # The joints in the body frame (canonical units about the pivot, y up).
                body_shoulders.append(np.stack([(s.px[:, 0] - q[0]) / f.scale,
                                                -(s.px[:, 1] - q[1]) / f.scale], -1))
                evidence.append(f)
                images.append(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        info = {"frames_sampled": int(len(frames)), "frames_showing_both_shoulders": shown}
        if shown < max(3, cfg.min_share * len(frames)):
            info.update(status="absent", reason=f"the clip shows both shoulders in {shown} of {len(frames)} sampled "
                                                 "frames: no torso (the head alone)")
            return info
        joints = np.median(np.stack(body_shoulders), 0) + np.asarray(NECK_PIVOT)[:2]
        neutral = sel.neutral[:NUM_MESH_POINTS].astype(np.float64)
        profile = fit_profile(evidence, neutral, joints, cfg)
        mesh = torso_mesh(profile, cfg.cols)
        texture, seen_share = unwrap_texture(profile, evidence, images, cfg.cols, cfg.texture_size, neutral)
        save_np({"y": profile.y, "a": profile.a, "b": profile.b, "cx": profile.cx, "cz": profile.cz,
                 "seen": profile.seen.astype(np.uint8), "shoulder_y": np.array([profile.shoulder_y]),
                 "exponent": np.array([profile.exponent]), "texture": texture}, str(d / "torso.safetensors"))
        width_m = float(2 * profile.a.max()) * CANONICAL_UNIT_M
        info.update(status="fitted", reason="", rings=int(len(profile.y)),
                    rings_measured=int(profile.seen.sum()), texture_seen_share=round(seen_share, 3),
                    shoulder_width_m=round(width_m, 3),
                    vertices=int(len(mesh.positions)), triangles=int(len(mesh.faces)))
        return info

    info = cache.run("torso", key, run)
    if info.get("status") != "fitted":
        return Torso(key, info, None, None)
    a = load_np(str(cache.work / "torso" / "torso.safetensors"))
    profile = TorsoProfile(a["y"], a["a"], a["b"], a["cx"], a["cz"], a["seen"].astype(bool),
                           float(a["shoulder_y"][0]), float(a["exponent"][0]))
    return Torso(key, info, torso_mesh(profile, cfg.cols), a["texture"])


def torso_block(torso: Torso) -> dict:
    """The manifest's ``torso`` block: whether the package has one, what of it was seen."""
    info = torso.info
    block = {"included": torso.mesh is not None, "status": info.get("status", "off"), "reason": info.get("reason", ""),
             "frames_sampled": info.get("frames_sampled"),
             "frames_showing_both_shoulders": info.get("frames_showing_both_shoulders")}
    if torso.mesh is not None:
        block.update(drawn_with="the body transform: the head's placement and translation, not its rotation; "
                                "the neck blends between the two",
                     contains=["shoulders and upper chest: front outline carved from person mattes where seen",
                               "its depth, its back and the part below the frame (inferred)"],
                     rings_measured=info.get("rings_measured"), rings=info.get("rings"),
                     texture_seen_share=info.get("texture_seen_share"), shoulder_width_m=info.get("shoulder_width_m"))
    return block


def with_torso(mesh: MeshArrays, torso: Torso, head: HeadMesh, neutral: np.ndarray) -> MeshArrays:
    """mesh.glb's arrays (metres) with the torso, the head's body weights and the neck pivot."""
    return replace(mesh, body_weight=neck_body_weights(head.positions, neutral, NUM_MESH_POINTS),
                   pivot=np.asarray(NECK_PIVOT, np.float32) * CANONICAL_UNIT_M,
                   torso=TorsoArrays((torso.mesh.positions * CANONICAL_UNIT_M).astype(np.float32), torso.mesh.uvs,
                                     torso.mesh.faces.astype(np.uint32), torso.texture))


__all__ = ["Torso", "TorsoInput", "fit_torso", "torso_block", "with_torso"]
