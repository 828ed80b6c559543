"""Stage ``export`` (never cached): preview.png, avatar.json and the atomic package write."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.avatar_package import write_package
from inference.features.mp478 import FEATURE_GAIN
from inference.head_model.preview import contact_sheet, face_crop, pick_expressions
from inference.head_model.topology import NUM_MESH_POINTS
from inference.head_model.train_vae import TrainConfig

from .animation import TrainedAnimation
from .basis import Basis
from .cache import StageRecord
from .config import BUILDER_VERSION, BuildError
from .evaluate import Evaluation
from .manifest import build_manifest, export_mesh, feature_normalisation
from .mesh import PersonalMesh
from .select import SelectedFrames
from .sources import Source
from .textures import Textures
from .track import Tracks, decode_frames
from .refinement import TrainedRefinement
from .vae import HeadModelData, TrainedVae
from .whole_head import WholeHead, whole_head_block


@dataclass(frozen=True, eq=False)
class PreviewInput:
    sources: tuple[Source, ...]
    tracks: Tracks
    selection: SelectedFrames
    basis: Basis
    mesh: PersonalMesh
    textures: Textures
    data: HeadModelData
    vae: TrainedVae
    torso: object | None = None  # torso.Torso: in the neutral row when fitted


def preview(inp: PreviewInput) -> np.ndarray:
    """The contact sheet (RGB): the neutral head, decoded expressions of a few varied training
    frames, and the source frames they came from."""
    vae, bs, mesh, t = inp.vae.vae, inp.basis, inp.mesh.mesh, inp.tracks
    picks = pick_expressions(bs.weights, inp.selection.train)
    data = inp.data.train
    expressions = []
    with torch.no_grad():
        for g in picks:
            r = torch.as_tensor(inp.data.rows([g]))
            mu, _ = vae.encoder(data.textures[r].float() / 255, data.weights[r])
            tex, wd = vae.decoder(mu)
            rgb = (tex[0].clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
            face = inp.selection.neutral[:NUM_MESH_POINTS] + bs.blendshapes.displacement(wd.numpy())[0]
            expressions.append((mesh.deform(face), rgb))
    found = {g: face_crop(frame, t.px[g]) for g, frame in decode_frames(inp.sources, t, picks)}
    crops = [found[g] for g in picks if g in found]
    whole = None
    if inp.torso is not None and inp.torso.mesh is not None:
        from inference.head_model.torso import append_torso

        t = inp.torso.mesh
        whole = append_torso(mesh.positions, mesh.faces, mesh.uvs, inp.textures.neutral, t.positions, t.faces, t.uvs,
                             inp.torso.texture)
    return contact_sheet(mesh.positions, mesh.faces, mesh.uvs, inp.textures.neutral, expressions, crops, whole=whole)


@dataclass(frozen=True, eq=False)
class ExportInput:
    out: Path
    sources: tuple[Source, ...]
    command: str
    device: str
    quick: bool
    train_config: TrainConfig
    selection: SelectedFrames
    mesh: PersonalMesh
    basis: Basis
    textures: Textures
    vae: TrainedVae
    evaluation: Evaluation
    animation: TrainedAnimation | None
    records: tuple[StageRecord, ...]  # the stages of this run, for the manifest's build block
    t_start: float  # time.monotonic() when the build started
    whole: "WholeHead | None" = None  # head mattes + shell (the manifest's whole_head block)
    refinement: "TrainedRefinement | None" = None
    kind_maps: object | None = None  # kind_maps.KindMaps: other feature kinds the avatar accepts
    alpha: object | None = None  # alpha.LearnedAlpha: the shell's soft outline (None or atlas None: opaque)
    torso: object | None = None  # torso.Torso: shoulders and upper chest (None or mesh None: the head alone)


def export(inp: ExportInput, preview_rgb: np.ndarray) -> dict:
    """Writes the package; returns its manifest (without the per-file checksums)."""
    ok, png = cv2.imencode(".png", preview_rgb[:, :, ::-1])
    if not ok:
        raise BuildError("could not encode preview.png")
    si = inp.selection.info
    build = {"frames": si["frames"], "kept": si["kept"], "rejected": si["rejected"], "train_frames": si["train"],
             "holdout_frame_ranges": si["holdout"],
             "stages": {r.name: {"seconds": round(r.seconds, 2), "cached": r.cached} for r in inp.records},
             "seconds_total_this_run": round(time.monotonic() - inp.t_start, 2)}
    anim = inp.animation
    vae = inp.vae.vae
    manifest = build_manifest(
        name=inp.out.name, vae=vae.cfg, mesh=inp.mesh.mesh, explained_variance=inp.basis.explained_variance,
        train_config=inp.train_config, animation=anim.block if anim else None, sources=inp.sources,
        command=inp.command, builder_version=BUILDER_VERSION, device=inp.device, quick=inp.quick,
        build=build, metrics=inp.evaluation.metrics,
        feature_normalisation=feature_normalisation(FEATURE_GAIN, anim.block["normalisation"]["mode"])
        if anim else None)
    extra = dict(anim.tensors) if anim else {}
    if inp.whole is not None:
        manifest["whole_head"] = whole_head_block(inp.whole, inp.mesh.mesh)
    ref = inp.refinement
    if ref is not None and ref.block is not None:
        manifest["refinement"] = ref.block
        extra.update(ref.tensors)
    else:
        manifest["refinement"] = {"included": False, "reason": (ref.info.get("reason") if ref else "not built")}
    mesh = export_mesh(inp.mesh.mesh, inp.basis.blendshapes)
    if inp.torso is not None:
        from .torso import torso_block, with_torso

        manifest["torso"] = torso_block(inp.torso)
        if inp.torso.mesh is not None:
            mesh = with_torso(mesh, inp.torso, inp.mesh.mesh, inp.selection.neutral[:NUM_MESH_POINTS])
    if anim and inp.kind_maps is not None:
        from inference.avatar_package import CANONICAL_UNIT_M

        from .kind_maps import arkit_targets

        manifest["feature_kinds"] = [manifest["feature"]["kind"], *sorted(inp.kind_maps.maps)]
        manifest["feature_maps"] = inp.kind_maps.block
        extra.update(inp.kind_maps.tensors)
        # mesh.glb also carries the ARKit-named shapes the avatar has (for Blender, three.js, Unreal).
        mesh.named_targets = arkit_targets(inp.kind_maps.maps["expr52"], inp.mesh.mesh.face_map, CANONICAL_UNIT_M)
    neutral = inp.textures.neutral
    if inp.alpha is not None:
        from .alpha import alpha_block

        manifest["alpha"] = alpha_block(inp.alpha)
        if inp.alpha.atlas is not None:
            import torch

            from inference.head_model.alpha_atlas import ALPHA_TENSOR

            extra[ALPHA_TENSOR] = torch.from_numpy(np.ascontiguousarray(inp.alpha.atlas))
            neutral = np.concatenate([neutral, inp.alpha.atlas[..., None]], -1)  # mesh.glb: RGBA, alphaMode BLEND
    write_package(inp.out, manifest, vae.decoder, mesh, neutral, png.tobytes(), extra_tensors=extra or None)
    return manifest
