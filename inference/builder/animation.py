"""Stage ``animation``: mp478 features of every tracked frame (the capture node's code path,
relative to the target's own relaxed face, as calibration/neutral.py makes a driver's) → LSTM +
residual encoder trained against the VAE encoder's z (inference/animation)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file as load_pt, save_file as save_pt

from core.atomic_files import atomic_write_text
from inference.animation import AnimationConfig, animation_manifest, animation_tensors, train_animation
from inference.animation.train import RecombinedSamples
from inference.features.mp478 import FEATURE_GAIN, Mp478Extractor
from inference.head_model.face_regions import RecombineConfig
from inference.head_model.topology import NUM_MESH_POINTS

from .basis import Basis
from .cache import StageCache, builder_stage_key
from .config import BuildError
from .progress import progress
from .recombination import Recombination, TargetRelaxedFace
from .select import SelectedFrames
from .track import Tracks
from .vae import HeadModelData, TrainedVae, encode_rows


@dataclass(frozen=True, eq=False)
class AnimationInput:
    tracks: Tracks
    selection: SelectedFrames
    basis: Basis
    relaxed: TargetRelaxedFace
    recombination: Recombination
    data: HeadModelData
    vae: TrainedVae
    config: AnimationConfig
    recombine: RecombineConfig
    recombination_key: dict  # BuildConfig.recombination_key()


@dataclass(frozen=True, eq=False)
class TrainedAnimation:
    key: str
    info: dict  # train/holdout frames, held-out R², seconds
    block: dict  # the manifest's "animation" block (included = true)
    tensors: dict  # the "anim.*" tensors for weights.safetensors


def _json_safe(x):
    """Metrics for avatar.json: non-finite floats (an undefined correlation) become null."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _round(v, nd: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


def training_arrays(inp: AnimationInput) -> dict:
    """Training arrays over ALL tracked frames (time order, every video): mp478 features by the
    capture node's extractor (``Mp478Extractor.extract``: Umeyama alignment to the neutral, then
    gain × (canonical − neutral)), z = the VAE encoder mean of kept frames (NaN elsewhere).
    Saved as ``animation/animation_data.npz`` for the ablation harness (inference/research)."""
    t, sel = inp.tracks, inp.selection
    keep = sel.keep
    n = len(keep)
    neutral = inp.relaxed.canonical
    extractor = Mp478Extractor(neutral, gain=FEATURE_GAIN)
    feats = np.full((n, 478 * 3), np.nan, np.float32)
    for g in np.flatnonzero(t.found):
        try:
            feats[g] = extractor.extract(t.px[g]).features.reshape(-1)
        except ValueError:  # degenerate landmarks: the capture node sends FACE_LOST for these
            pass
    z = np.full((n, inp.vae.vae.cfg.z_dim), np.nan, np.float32)
    z[inp.data.kept] = encode_rows(inp.vae.vae, inp.data)
    holdout = np.zeros(n, bool)
    holdout[sel.holdout] = True
    return {"features": feats, "z": z, "valid": keep & np.isfinite(feats).all(1), "holdout": holdout,
            "segments": t.video.astype(np.int64), "neutral": neutral}


def relaxed_latent(inp: AnimationInput) -> np.ndarray:
    """z of the relaxed face: per-texel and per-landmark medians of the frames its upper and its
    lower face come from, recombined. No single frame is that face — every frame sits at some
    distance from the median in feature space — so the animation network is shown it explicitly:
    a relaxed driver (features ≈ 0) must get the target's relaxed face."""
    upper, lower = inp.relaxed.upper_frames, inp.relaxed.lower_frames
    data = inp.data.train
    neutral = inp.selection.neutral
    point_w = inp.recombination.point_weight[:NUM_MESH_POINTS, None]
    canon = inp.selection.canonical[:, :NUM_MESH_POINTS]
    face = point_w * np.median(canon[upper], 0) + (1 - point_w) * np.median(canon[lower], 0)
    weights = inp.basis.blendshapes.weights((face - neutral[:NUM_MESH_POINTS])[None])
    rows = [torch.as_tensor(inp.data.rows(frames)) for frames in (upper, lower)]
    up, lo = (data.textures[r].float().median(0).values / 255 for r in rows)
    tw = data.recombined.texel_weight
    with torch.no_grad():
        return inp.vae.vae.encoder((tw * up + (1 - tw) * lo)[None], torch.from_numpy(weights))[0][0].numpy()


def recombined_latents(inp: AnimationInput) -> RecombinedSamples | None:
    """The animation network's recombined samples: the same donor pairs as the VAE's, each with
    its features blended per landmark and its latent from the head model's encoder, and the latent
    of the relaxed face itself (``relaxed_latent``)."""
    data = inp.data.train
    rc = data.recombined
    if rc is None:
        return None
    encoder = inp.vae.vae.encoder
    z = np.zeros((len(rc.pairs), inp.vae.vae.cfg.z_dim), np.float32)
    with torch.no_grad():
        for i in range(0, len(rc.pairs), 64):
            tex, _, w = rc.batch(data, np.arange(i, min(i + 64, len(rc.pairs))))
            z[i:i + 64] = encoder(tex, w)[0].numpy()
    return RecombinedSamples(inp.recombination.pairs, z, np.repeat(inp.recombination.point_weight, 3),
                             inp.recombine.animation_fraction, relaxed_z=relaxed_latent(inp),
                             relaxed_per_batch=inp.recombine.relaxed_windows)


def train_animation_network(cache: StageCache, inp: AnimationInput) -> TrainedAnimation:
    cfg = inp.config
    key = builder_stage_key("animation", {"anim": cfg.to_dict(), "gain": FEATURE_GAIN, "neutral": "relaxed-face",
                                          **inp.recombination_key},
                            [inp.vae.key, inp.selection.key, inp.tracks.key])

    def run(d: Path) -> dict:
        arrays = training_arrays(inp)
        # For `python -m inference.research.ablate_animation --npz` on real data (plain arrays, no pickles).
        np.savez(d / "animation_data.npz", **arrays)
        with progress(cfg.steps, "animation", unit="step") as bar:
            try:
                net, norm, metrics = train_animation(
                    arrays["features"], arrays["z"], arrays["valid"], cfg, segments=arrays["segments"],
                    holdout=arrays["holdout"], decoder=inp.vae.vae.decoder, recombined=recombined_latents(inp),
                    progress=lambda *_: bar.update(1))
            except ValueError as exc:  # too few usable frames outside the held-out slice
                raise BuildError(f"animation network: {exc}") from exc
        block = {"included": True, **animation_manifest(net, norm, "mp478", _json_safe(metrics))}
        save_pt(animation_tensors(net, norm, target_neutral=arrays["neutral"]), str(d / "animation.safetensors"))
        atomic_write_text(d / "animation.json", json.dumps(block, indent=1))
        ho = metrics.get("holdout") or {}
        return {"train_frames": metrics["frames"]["train"], "holdout_frames": metrics["frames"]["holdout"],
                "holdout_z_r2": _round(ho.get("z_r2")), "holdout_weights_r2": _round(ho.get("weights_r2")),
                "train_seconds": metrics["seconds"]}

    info = cache.run("animation", key, run)
    d = cache.work / "animation"
    return TrainedAnimation(key, info, json.loads((d / "animation.json").read_text()),
                            load_pt(str(d / "animation.safetensors")))
