"""Feature normalisation statistics, computed on the target's training frames and stored in the package.

Two modes:

* ``zero_centred`` (default, for ``mp478``): the features are already "face minus the driver's own
  neutral", so zero *means* neutral for every driver. Subtracting the target's mean expression
  would move that anchor by how expressive the training clip happened to be, so no mean is
  subtracted; only a per-dimension scale is applied.
* ``per_dim`` (for ``deca2048``, whose pooled activations are non-negative and have no neutral
  anchor): classic mean/std per dimension.

The per-dimension std is floored at ``std_floor × median std``: dimensions that barely move for the
target (forehead points, for example) would otherwise be blown up to unit variance, amplifying
tracker jitter and any other driver's idiosyncrasies on exactly the dimensions that carry no
information.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class FeatureNormalisation:
    mean: np.ndarray  # (D,) float32, zeros in zero_centred mode
    std: np.ndarray  # (D,) float32, > 0
    mode: str

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    @staticmethod
    def fit(features: np.ndarray, mode: str = "zero_centred", std_floor: float = 0.5) -> "FeatureNormalisation":
        x = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        if x.shape[0] < 2 or not np.isfinite(x).all():
            raise ValueError("normalisation needs at least two finite feature frames")
        if mode == "zero_centred":
            mean = np.zeros(x.shape[1])
            std = np.sqrt((x ** 2).mean(0))  # spread around the neutral anchor, not the mean
        elif mode == "per_dim":
            mean = x.mean(0)
            std = x.std(0)
        else:
            raise ValueError(f"unknown normalisation mode {mode!r}")
        floor = max(float(np.median(std)) * std_floor, 1e-6)
        std = np.maximum(std, floor)
        return FeatureNormalisation(mean.astype(np.float32), std.astype(np.float32), mode)

    def apply(self, features: np.ndarray) -> np.ndarray:
        """features: (..., D) with the per-frame features flattened (``frame.features.reshape(-1)``)."""
        return (np.asarray(features, dtype=np.float32) - self.mean) / self.std

    def neutral(self) -> np.ndarray:
        """The raw feature vector that stands for "driver at rest": zeros (mp478) or the mean (deca)."""
        return self.mean.copy() if self.mode == "per_dim" else np.zeros_like(self.mean)

    # -- package I/O ------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "anim.norm.") -> dict[str, torch.Tensor]:
        return {prefix + "mean": torch.from_numpy(self.mean.copy()), prefix + "std": torch.from_numpy(self.std.copy())}

    def config_dict(self) -> dict:
        return {"mode": self.mode, "dim": self.dim}

    @staticmethod
    def from_state_dict(tensors: dict[str, torch.Tensor], config: dict, prefix: str = "anim.norm.") -> "FeatureNormalisation":
        try:
            mean = tensors[prefix + "mean"].detach().cpu().numpy().astype(np.float32)
            std = tensors[prefix + "std"].detach().cpu().numpy().astype(np.float32)
        except KeyError as exc:
            raise ValueError(f"normalisation tensor {exc.args[0]!r} missing") from None
        if mean.shape != std.shape or mean.ndim != 1 or mean.shape[0] != int(config.get("dim", -1)):
            raise ValueError(f"normalisation shapes {mean.shape}/{std.shape} do not match dim {config.get('dim')}")
        if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
            raise ValueError("normalisation statistics are not finite and positive")
        if config.get("mode") not in ("zero_centred", "per_dim"):
            raise ValueError(f"unknown normalisation mode {config.get('mode')!r}")
        return FeatureNormalisation(mean, std, config["mode"])
