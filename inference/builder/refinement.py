"""Stage ``refinement``: the screen-space refinement network (head_model/refinement.py), trained
on the clip's training frames and measured on its held-out frames against the same avatar without
it (geometry + alpha alone), in the same run.

Per frame, the avatar is rendered as the render node would draw it for that frame — the VAE's
reconstruction (encoder mean → decoder: texture and blendshape weights) on the personal mesh,
placed with the tracked pose, in the source camera's view, 2×2 supersampled — and paired with
the real frame × its head matte (whole_head stage) and the matte. Both are cut by the chin line,
as in ``headcast eval appearance``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from inference.head_model.matte import above_chin
from inference.head_model.refinement import (
    RefinementConfig, RefineNet, crop_pair, crop_square, refinement_block, tensors_of, train_refinement,
)
from inference.head_model.render import render_in_view
from inference.head_model.topology import NUM_MESH_POINTS

from .basis import Basis
from .cache import StageCache, builder_stage_key
from .mesh import PersonalMesh
from .select import SelectedFrames
from .sources import Source
from .track import Tracks, decode_frames
from .vae import HeadModelData, TrainedVae
from .whole_head import WholeHead

# The CPU path's share of a 60 Hz frame (16.7 ms) the refinement may take for one avatar, both
# eyes: the engine step (~4 ms) and the GL frame need the rest on 2 cores.
CPU_BUDGET_MS = 4.0


@dataclass(frozen=True, eq=False)
class RefinementInput:
    sources: tuple[Source, ...]
    tracks: Tracks
    selection: SelectedFrames
    basis: Basis
    mesh: PersonalMesh
    data: HeadModelData
    vae: TrainedVae
    whole: WholeHead
    config: RefinementConfig
    max_train_frames: int
    enabled: bool
    alpha: np.ndarray | None = None  # (S, S) uint8 learned edge-on alpha (alpha stage): rendered as the node would
    alpha_key: str = ""


@dataclass(frozen=True, eq=False)
class TrainedRefinement:
    key: str
    info: dict
    block: dict | None  # the manifest's ``refinement`` block (None: not built)
    tensors: dict | None  # refine.* tensors


def _render_frames(inp: RefinementInput, frames: list[int]):
    """Yields (global frame, network input (4, S, S), target (4, S, S)) per frame: the avatar
    rendered straight into the head's crop at the network's size (2×2 supersampled; the crop is
    the projected head's bounding square, what ``crop_box`` finds on a full render), and the real
    frame × matte and the matte resampled into the same crop. Both cut by the chin line."""
    cfg = inp.config
    sel, mesh, bs, t = inp.selection, inp.mesh.mesh, inp.basis, inp.tracks
    vae = inp.vae.vae
    slot = {int(g): j for j, g in enumerate(inp.whole.kept)}
    rows = inp.data.rows(frames)
    data = inp.data.train
    with torch.no_grad():
        r = torch.as_tensor(rows)
        mu, _ = vae.encoder(data.textures[r].float() / 255, data.weights[r])
        tex, wd = vae.decoder(mu)
    tex = (tex.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).numpy()
    order = {int(g): k for k, g in enumerate(frames)}
    size = cfg.size
    for g, frame in decode_frames(inp.sources, t, frames):
        k = order[g]
        face = sel.neutral[:NUM_MESH_POINTS] + bs.blendshapes.displacement(wd[k:k + 1].numpy())[0]
        px = sel.scale[g] * mesh.deform(face) @ sel.rotation[g].T + sel.translation[g]
        h, w = frame.shape[:2]
        box = crop_square(px, cfg.margin)
        sc = size / box[2]
        local = np.concatenate([(px[:, :2] - np.array(box[:2])) * sc, px[:, 2:] * sc], 1)
        a = inp.alpha[..., None] if inp.alpha is not None else np.full(tex[k].shape[:2] + (1,), 255, np.uint8)
        rgba = np.concatenate([tex[k], a], -1)
        rgb, alpha = render_in_view(local, mesh.faces, mesh.uvs, rgba, size, size, 2)
        region_full = above_chin((h, w), t.px[g]).astype(np.float32)
        region = crop_pair(np.zeros((h, w, 3), np.float32), region_full, box, size)[3]
        # The render only covers the image where the frame does.
        inside = crop_pair(np.zeros((h, w, 3), np.float32), np.ones((h, w), np.float32), box, size)[3]
        region = region * (inside > 0.5)
        matte = inp.whole.mattes[slot[g]].astype(np.float32) / 255.0
        src = frame[:, :, ::-1].astype(np.float32) / 255.0
        target = crop_pair(src * matte[..., None], matte, box, size) * region[None]
        x = np.concatenate([rgb.transpose(2, 0, 1), alpha[None]], 0) * region[None]
        yield g, np.ascontiguousarray(x, np.float32), np.ascontiguousarray(target, np.float32)


def _scores(rgb, alpha, target_rgb, target_matte) -> tuple[float, float]:
    sil_a, sil_m = alpha >= 0.5, target_matte >= 0.5
    union = sil_a | sil_m
    iou = float((sil_a & sil_m).sum() / max(union.sum(), 1))
    mse = float(((rgb - target_rgb) ** 2)[union].mean()) if union.any() else 0.0
    return iou, float(10 * np.log10(1.0 / max(mse, 1e-10)))


def cpu_ms(net: RefineNet, config: RefinementConfig, batch: int = 2, runs: int = 20) -> float:
    """Median ms of one forward at the network's size for ``batch`` crops (two eyes), one thread."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.rand(batch, 4, config.size, config.size)
        times = []
        with torch.no_grad():
            for _ in range(runs + 3):
                t0 = time.perf_counter()
                net(x)
                times.append((time.perf_counter() - t0) * 1e3)
        return float(np.median(times[3:]))
    finally:
        torch.set_num_threads(prev)


def train_refinement_stage(cache: StageCache, inp: RefinementInput) -> TrainedRefinement:
    cfg = inp.config
    key = builder_stage_key("refinement", {"cfg": cfg.to_dict(), "max": inp.max_train_frames, "on": inp.enabled,
                                           "render": "crop"},
                            [inp.vae.key, inp.whole.key, inp.mesh.key] + ([inp.alpha_key] if inp.alpha is not None else []))
    usable = inp.enabled and inp.whole.mattes is not None and inp.whole.info.get("status") == "fitted"

    def run(d: Path) -> dict:
        if not usable:
            return {"status": "off", "reason": "no head mattes (whole head off or fell back)"}
        train = [int(g) for g in inp.selection.train]
        if len(train) > inp.max_train_frames:
            train = [train[i] for i in np.linspace(0, len(train) - 1, inp.max_train_frames).round().astype(int)]
        xs, ys = [], []
        for _, x, y in _render_frames(inp, train):
            xs.append(x)
            ys.append(y)
        net, stats = train_refinement(np.stack(xs), np.stack(ys), cfg)
        before, after = [], []
        with torch.no_grad():
            for _, x, y in _render_frames(inp, [int(g) for g in inp.selection.holdout]):
                before.append(_scores(x[:3].transpose(1, 2, 0), x[3], y[:3].transpose(1, 2, 0), y[3]))
                o = net(torch.from_numpy(x)[None])[0].numpy()
                after.append(_scores(o[:3].transpose(1, 2, 0), o[3], y[:3].transpose(1, 2, 0), y[3]))
        b, a = np.mean(before, 0), np.mean(after, 0)
        ms = cpu_ms(net, cfg)
        better = bool(a[1] > b[1] and a[0] >= b[0] - 0.002)
        # Held-out scores at the network's crop resolution (headcast eval appearance: full frames).
        metrics = {"holdout_frames": len(before), "holdout_iou_without": round(float(b[0]), 4),
                   "holdout_iou_with": round(float(a[0]), 4), "holdout_psnr_db_without": round(float(b[1]), 3),
                   "holdout_psnr_db_with": round(float(a[1]), 3), "cpu_ms_two_eyes_1thread": round(ms, 2),
                   "cpu_budget_ms": CPU_BUDGET_MS, **stats}
        default_cpu = better and ms <= CPU_BUDGET_MS
        save_file(tensors_of(net), str(d / "refinement.safetensors"))
        return {"status": "trained", "train_frames": len(xs), "better": better, "default_cpu": default_cpu,
                "metrics": metrics}

    info = cache.run("refinement", key, run)
    if info.get("status") != "trained":
        return TrainedRefinement(key, info, None, None)
    tensors = load_file(str(cache.work / "refinement" / "refinement.safetensors"))
    block = refinement_block(cfg, info["metrics"], bool(info["default_cpu"]))
    block["default"]["cuda"] = bool(info["better"])
    return TrainedRefinement(key, info, block, tensors)
