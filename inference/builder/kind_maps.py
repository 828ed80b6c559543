"""Stage ``kindmaps``: the avatar also accepts ``expr52`` streams (the 52 named ARKit weights).

On the target's own tracked frames, both kinds are measured exactly as a capture node measures
them against the same relaxed face the animation stage uses (``Mp478Extractor`` for ``mp478``,
``inference/features/expr52.py`` on the same canonical shape for ``expr52``); a linear map
``expr52 → mp478`` is fitted on the training frames (inference/animation/kind_map.py) and scored
on the held-out ones. Cheap (a 52 × 1434 least-squares solve), so ``--quick`` builds carry it too.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from safetensors.torch import load_file as load_pt, save_file as save_pt

from inference.animation.kind_map import KindMap, fit_kind_map, manifest_entry
from inference.features.expr52 import VERSION as EXPR52_VERSION, effective_weights, expr52_frame
from inference.features.mp478 import FEATURE_GAIN, Mp478Extractor

from .cache import StageCache, builder_stage_key
from .recombination import TargetRelaxedFace
from .select import SelectedFrames
from .track import Tracks

KIND = "expr52"
RIDGE = 1e-2  # relative to the mean diagonal of XᵀX (kind_map.fit_kind_map)
REGIONS = True  # separate upper/lower-face maps (kind_map.fit_kind_map)
# Lower face split again at the mouth (expr52_names.BELOW_MOUTH / ABOVE_MOUTH): on the man's clip
# driving the woman's quick avatar, jaw_open through expr52 went from r −0.667 (the upper lip's
# weight lifted the chin by 0.69 a unit against jawOpen's drop of 1.06: she grins with her jaw
# open) to −0.050, mouth and smile unchanged, her held-out frames within 0.02 of direct; the fit's
# R² 0.968 → 0.911 (docs/ANIMATION.md §6 has why his jaw still does not follow).
MOUTH_BANDS = True


@dataclass(frozen=True, eq=False)
class KindMapInput:
    tracks: Tracks
    selection: SelectedFrames
    relaxed: TargetRelaxedFace
    point_weight: np.ndarray | None = None  # (478,) upper-face weight per landmark (recombination); None: one map


@dataclass(frozen=True, eq=False)
class KindMaps:
    key: str
    info: dict
    maps: dict  # {"expr52": KindMap}
    block: dict  # the manifest's feature_maps block

    @property
    def tensors(self) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for m in self.maps.values():
            out.update(m.tensors())
        return out


def both_kinds(tracks: Tracks, neutral: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1434) mp478 features and (N, 52, 2) expr52 payloads of every tracked frame (NaN where none)."""
    n = len(tracks.found)
    ex = Mp478Extractor(neutral, gain=FEATURE_GAIN)
    feats = np.full((n, 478 * 3), np.nan, np.float32)
    expr = np.full((n, 52, 2), np.nan, np.float32)
    for g in np.flatnonzero(tracks.found):
        try:
            r = ex.extract(tracks.px[g])
        except ValueError:
            continue
        feats[g] = r.features.reshape(-1)
        expr[g] = expr52_frame(r.canonical, neutral)
    return feats, expr


def face_bands(point_weight: np.ndarray, neutral: np.ndarray, mouth: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """The map's bands (kind_map.fit_kind_map): the upper face ← eye and brow weights; the lower
    face ← the rest, split at the mouth when ``mouth`` (face_regions.below_mouth_weight): below
    it ← all but the upper lip's, nose's and cheeks' weights, above it ← all but the jaw's and
    lower lip's."""
    from inference.features.expr52_names import ABOVE_MOUTH, ARKIT52, BELOW_MOUTH, UPPER_FACE
    from inference.head_model.face_regions import below_mouth_weight

    upper = np.array([n in UPPER_FACE for n in ARKIT52])
    up = np.repeat(point_weight.astype(np.float64), 3)
    if not mouth:
        return [(upper, up), (~upper, 1.0 - up)]
    below = np.repeat(below_mouth_weight(neutral).astype(np.float64), 3)
    jaw = np.array([n in BELOW_MOUTH for n in ARKIT52])
    lip = np.array([n in ABOVE_MOUTH for n in ARKIT52])
    return [(upper, up), (~upper & ~lip, (1.0 - up) * below), (~upper & ~jaw, (1.0 - up) * (1.0 - below))]


def fit_kind_maps(cache: StageCache, inp: KindMapInput) -> KindMaps:
    key = builder_stage_key("kindmaps", {"kinds": [KIND], "gain": FEATURE_GAIN, "ridge": RIDGE,
                                         "expr52_version": EXPR52_VERSION,
                                         "regions": REGIONS and inp.point_weight is not None,
                                         **({"bands": "upper,below,above"} if MOUTH_BANDS else {})},
                            [inp.selection.key, inp.tracks.key])

    def run(d) -> dict:
        feats, expr = both_kinds(inp.tracks, inp.relaxed.canonical)
        holdout = np.zeros(len(feats), bool)
        holdout[inp.selection.holdout] = True
        train = inp.selection.keep & ~holdout
        bands = None
        if inp.point_weight is not None and REGIONS:
            bands = face_bands(np.asarray(inp.point_weight), inp.relaxed.canonical, MOUTH_BANDS)
        kmap, metrics = fit_kind_map(KIND, expr[train], feats[train], ridge=RIDGE, bands=bands)
        test = inp.selection.keep & holdout & np.isfinite(feats).all(1)
        if test.any():
            pred = effective_weights(expr[test]) @ kmap.weight
            y = feats[test]
            metrics["holdout_r2_about_zero"] = round(float(1 - ((y - pred) ** 2).sum() / max((y ** 2).sum(), 1e-12)), 4)
        save_pt(kmap.tensors(), str(d / "kindmaps.safetensors"))
        return {"expr52_r2": metrics["r2_about_zero"], "expr52_holdout_r2": metrics.get("holdout_r2_about_zero"),
                "metrics": metrics}

    info = cache.run("kindmaps", key, run)
    tensors = load_pt(str(cache.work / "kindmaps" / "kindmaps.safetensors"))
    w = tensors[f"anim.kindmap.{KIND}.weight"].numpy()
    kmap = KindMap(KIND, w)
    return KindMaps(key, info, {KIND: kmap}, {KIND: manifest_entry(kmap, "mp478", info.get("metrics", {}))})


# A named shape whose largest vertex motion is below this (metres) is one the avatar does not have
# (its frames never showed it, or landmarks cannot see it: tongueOut, cheekPuff, mouthClose).
MIN_TARGET_M = 5e-4


def arkit_targets(kmap: KindMap, face_map: np.ndarray, unit_m: float) -> dict[str, np.ndarray]:
    """The avatar's own geometry for each ARKit weight at 1: the kind map's row (mp478 features per
    unit weight = gain × canonical landmark motion) carried to the mesh's vertices like the
    blendshapes are (``face_map``), in metres. Only shapes that move the mesh are kept."""
    from inference.features.expr52_names import ARKIT52
    from inference.head_model.topology import NUM_MESH_POINTS

    out = {}
    for i, name in enumerate(ARKIT52):
        motion = kmap.weight[i].reshape(478, 3)[:NUM_MESH_POINTS] / FEATURE_GAIN
        delta = (face_map @ motion) * unit_m
        if np.abs(delta).max() >= MIN_TARGET_M:
            out[name] = delta.astype(np.float32)
    return out
