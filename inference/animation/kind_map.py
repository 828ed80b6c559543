"""Maps from another feature kind into the kind an avatar's animation network was trained on.

An avatar accepts ``expr52`` (the 52 named ARKit weights) through a linear map fitted on the
target's *own* frames: for every tracked frame the builder measures both the ``mp478`` features
and the ``expr52`` weights against the same relaxed face, and ridge regression (no intercept: a
relaxed driver, all weights 0, must land on features 0, the network's "at rest") gives
``mp478 ≈ weights × W``, fitted per face region (eye and brow weights → upper-face features, the
rest → lower-face features). One map over everything learned the target's correlations — she laughs
with her jaw open and brows up — and moved every driver's jaw and brows with their smile: on the
man's clip jaw_open transfer r fell from 0.88 (direct) to −0.56 and brows from 0.74 to 0.53; per
region they are 0.68 and 0.78 (docs/ANIMATION.md §6). The builder splits the lower face again at
the mouth (``bands``), so the upper lip's weights cannot lift the chin: the free lower-face map
inverted the man's jaw on a later build (−0.67). The engine applies it to each incoming ``expr52`` frame and runs the
avatar's one animation network, so batching and CUDA graphs are unchanged and there is a single
network to train. What the map cannot carry — any motion the 52 weights do not describe — is the
measured cost of the named space (docs/ANIMATION.md).

Package form: tensor ``anim.kindmap.<kind>.weight`` (52, D) in weights.safetensors and an entry in
the manifest's ``feature_maps`` block; loading checks shape and finiteness and names what is wrong.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.features.expr52 import effective_weights

PREFIX = "anim.kindmap."
SOURCE_DIMS = {"expr52": 52}


@dataclass(frozen=True)
class KindMap:
    source_kind: str  # "expr52"
    weight: np.ndarray  # (S, D) float32: target features = effective source × weight

    def apply(self, payload: np.ndarray) -> np.ndarray:
        """One frame's wire payload ((52, 2) for expr52) → the (D,) features the network expects."""
        x = effective_weights(payload)
        return (x @ self.weight).astype(np.float32)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"{PREFIX}{self.source_kind}.weight": torch.from_numpy(np.ascontiguousarray(self.weight, np.float32))}


def fit_kind_map(source_kind: str, payloads: np.ndarray, features: np.ndarray, ridge: float = 1e-2,
                 regions: tuple[np.ndarray, np.ndarray] | None = None,
                 bands: list[tuple[np.ndarray, np.ndarray]] | None = None) -> tuple[KindMap, dict]:
    """Ridge regression without intercept over frames where both are finite.

    ``payloads`` (N, 52, 2), ``features`` (N, D). ``ridge`` is relative to the mean diagonal of
    XᵀX, so it means the same for any number of frames. ``bands`` [(allowed (52,) bool,
    share (D,) in [0, 1]), ...] with shares summing to 1 per feature: each band's share of every
    feature is explained only by its allowed weights (``regions`` (upper, feature_upper) is the
    two-band case). Returns the map and its fit metrics."""
    x = effective_weights(np.asarray(payloads, np.float32)).astype(np.float64)
    y = np.asarray(features, np.float64).reshape(len(x), -1)
    ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    if ok.sum() < 16:
        raise ValueError(f"kind map {source_kind}: only {int(ok.sum())} usable frames (need 16)")
    x, y = x[ok], y[ok]
    if regions is not None:
        # Upper-face weights (eyes, brows) may move only upper-face features and lower-face weights
        # only lower-face ones (``feature_upper`` (D,) in [0, 1] splits a feature between them), so
        # a target who laughs with raised brows does not teach the map to lift every driver's brows
        # with their smile.
        upper, feature_upper = np.asarray(regions[0], bool), np.asarray(regions[1], np.float64)
        bands = [(upper, feature_upper), (~upper, 1.0 - feature_upper)]
    if bands is None:
        w = _ridge(x, y, ridge)
    else:
        total = np.sum([np.asarray(share, np.float64) for _, share in bands], axis=0)
        if not np.allclose(total, 1.0, atol=1e-4):
            raise ValueError("kind map bands: the feature shares must add up to 1 for every feature")
        w = np.zeros((x.shape[1], y.shape[1]))
        for allowed, share in bands:
            sel, fw = np.asarray(allowed, bool), np.asarray(share, np.float64)
            if sel.any():
                w[sel] += _ridge(x[:, sel], y * fw, ridge) * fw
    pred = x @ w
    ss_res = float(((y - pred) ** 2).sum())
    ss_tot = float((y ** 2).sum())  # around zero: the features' own origin is "relaxed"
    active = int((np.abs(x).max(0) > 1e-3).sum())
    return KindMap(source_kind, w.astype(np.float32)), {
        "frames": int(ok.sum()), "r2_about_zero": round(1.0 - ss_res / max(ss_tot, 1e-12), 4),
        "active_inputs": active, "ridge": ridge}


def _ridge(x: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    gram = x.T @ x
    lam = ridge * max(float(np.trace(gram)) / len(gram), 1e-9)
    return np.linalg.solve(gram + lam * np.eye(len(gram)), x.T @ y)


def manifest_entry(kmap: KindMap, target_kind: str, metrics: dict) -> dict:
    return {"into": target_kind, "method": "linear (ridge, no intercept) on the target's own frames",
            "input": "weights x confidence (inference/features/expr52.py effective_weights)",
            "tensor": f"{PREFIX}{kmap.source_kind}.weight", "shape": list(kmap.weight.shape), "metrics": metrics}


def load_kind_maps(block: dict | None, tensors: dict, feature_dim: int) -> dict[str, KindMap]:
    """The manifest's ``feature_maps`` block + the ``anim.kindmap.*`` tensors → {kind: KindMap};
    raises ValueError naming what is missing, mis-shaped or undeclared."""
    block = block or {}
    if not isinstance(block, dict):
        raise ValueError("feature_maps must be an object")
    out: dict[str, KindMap] = {}
    for kind, entry in block.items():
        if kind not in SOURCE_DIMS:
            raise ValueError(f"feature_maps: unknown source kind {kind!r} (known: {', '.join(SOURCE_DIMS)})")
        name = f"{PREFIX}{kind}.weight"
        if name not in tensors:
            raise ValueError(f"feature_maps.{kind}: tensor {name} is missing")
        w = tensors[name].detach().cpu().float().numpy()
        if w.shape != (SOURCE_DIMS[kind], feature_dim):
            raise ValueError(f"{name}: shape {w.shape}, expected {(SOURCE_DIMS[kind], feature_dim)}")
        if not np.isfinite(w).all():
            raise ValueError(f"{name} holds non-finite values")
        out[kind] = KindMap(kind, w)
    undeclared = sorted(k for k in tensors if k.startswith(PREFIX) and k.split(".")[2] not in block)
    if undeclared:
        raise ValueError(f"kind-map tensors the manifest does not declare: {undeclared[:4]}")
    return out
