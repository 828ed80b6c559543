"""Stage ``basis``: K blendshapes by PCA of canonical displacements (real and recombined faces),
and the blendshape weights of every kept frame."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.blendshapes import BasisConfig, Blendshapes, fit_blendshapes
from inference.head_model.topology import NUM_MESH_POINTS

from .cache import StageCache, builder_stage_key
from .recombination import Recombination
from .select import SelectedFrames


@dataclass(frozen=True, eq=False)
class BasisInput:
    selection: SelectedFrames
    recombination: Recombination
    config: BasisConfig
    recombination_key: dict  # BuildConfig.recombination_key()


@dataclass(frozen=True, eq=False)
class Basis:
    key: str
    info: dict  # k, explained_variance
    blendshapes: Blendshapes
    weights: np.ndarray  # (N, K) float32 per global frame; zeros for rejected frames

    @property
    def explained_variance(self) -> float:
        return self.info["explained_variance"]


def fit_basis(cache: StageCache, inp: BasisInput) -> Basis:
    sel = inp.selection
    key = builder_stage_key("basis", {**asdict(inp.config), **inp.recombination_key}, [sel.key])

    def run(d: Path) -> dict:
        canon, neutral = sel.canonical, sel.neutral
        kept = sel.kept
        disp = canon[:, :NUM_MESH_POINTS] - neutral[:NUM_MESH_POINTS]
        fit = disp[sel.train]
        # As many recombined faces as real ones: the basis must span eyes and mouth moving apart.
        pairs = inp.recombination.pairs
        mixed = inp.recombination.displacements(sel, pairs[::max(1, len(pairs) // max(1, len(fit)))][:len(fit)])
        bs = fit_blendshapes(np.concatenate([fit, mixed]), inp.config)
        weights = np.zeros((len(canon), bs.k), np.float32)
        weights[kept] = bs.weights(disp[kept])
        save_np({"basis": bs.basis, "weights": weights, "explained": np.array([bs.explained], np.float64)},
                str(d / "basis.safetensors"))
        return {"k": bs.k, "explained_variance": round(bs.explained, 4)}

    info = cache.run("basis", key, run)
    b = load_np(str(cache.work / "basis" / "basis.safetensors"))
    return Basis(key, info, Blendshapes(b["basis"], float(b["explained"][0])), b["weights"])
