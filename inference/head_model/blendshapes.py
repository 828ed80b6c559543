"""Person-specific geometry basis: PCA of canonical-space displacements from the neutral face.

Uncentred (the neutral is the origin, not the mean), so zero weights are exactly the neutral face,
and scaled so training-set weights have unit variance (the VAE's L2 loss then treats every
component alike). K is the smallest count reaching the requested explained variance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BasisConfig:
    explained_variance: float = 0.985
    k_min: int = 4
    k_max: int = 48


@dataclass
class Blendshapes:
    basis: np.ndarray  # (K, P, 3) float32 displacement per unit weight
    explained: float  # fraction of displacement energy the K components explain

    @property
    def k(self) -> int:
        return int(self.basis.shape[0])

    def weights(self, displacement: np.ndarray) -> np.ndarray:
        """Least-squares weights (N, K) for displacements (N, P, 3)."""
        b = self.basis.reshape(self.k, -1)
        d = displacement.reshape(len(displacement), -1)
        return np.linalg.solve(b @ b.T, b @ d.T).T.astype(np.float32)

    def displacement(self, weights: np.ndarray) -> np.ndarray:
        return np.einsum("nk,kpc->npc", weights, self.basis).astype(np.float32)


def fit_blendshapes(displacement: np.ndarray, config: BasisConfig = BasisConfig()) -> Blendshapes:
    n = len(displacement)
    d = displacement.reshape(n, -1).astype(np.float64)
    _, sv, vt = np.linalg.svd(d, full_matrices=False)
    energy = np.cumsum(sv ** 2) / max(float((sv ** 2).sum()), 1e-12)
    k = int(np.searchsorted(energy, config.explained_variance) + 1)
    k = int(np.clip(k, config.k_min, min(config.k_max, len(sv))))
    basis = (vt[:k] * (sv[:k, None] / np.sqrt(n))).reshape(k, *displacement.shape[1:])
    return Blendshapes(basis.astype(np.float32), float(energy[k - 1]))
