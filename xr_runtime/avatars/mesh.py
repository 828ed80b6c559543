"""The avatar mesh the renderer draws: neutral geometry, UVs, triangles and a blendshape basis.

Conventions (shared with the avatar builder and `mesh.glb`):
* metres, +Y up, the face looks along +Z in model space (glTF's convention);
* UVs follow glTF: origin at the *top-left* of the texture image, v grows downwards, so a texture
  array whose row 0 is the top row of the image is uploaded as is;
* blendshapes are per-vertex position deltas, (K, V, 3), added as ``sum_k w_k * delta_k``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAX_BLENDSHAPES = 64  # size of the weight uniform array in avatar.vert


@dataclass(frozen=True)
class AvatarMeshData:
    positions: np.ndarray    # (V, 3) float32
    uvs: np.ndarray          # (V, 2) float32
    indices: np.ndarray      # (F, 3) uint32
    blendshapes: np.ndarray  # (K, V, 3) float32, K may be 0

    def __post_init__(self) -> None:
        # Normalise dtypes once here so the GL upload can trust the layout.
        object.__setattr__(self, "positions", np.ascontiguousarray(self.positions, dtype=np.float32))
        object.__setattr__(self, "uvs", np.ascontiguousarray(self.uvs, dtype=np.float32))
        object.__setattr__(self, "indices", np.ascontiguousarray(self.indices, dtype=np.uint32))
        object.__setattr__(self, "blendshapes", np.ascontiguousarray(self.blendshapes, dtype=np.float32))
        v = self.positions.shape[0] if self.positions.ndim == 2 else -1
        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or v < 3:
            raise ValueError(f"positions must be (V>=3, 3), got {self.positions.shape}")
        if self.uvs.shape != (v, 2):
            raise ValueError(f"uvs must be ({v}, 2), got {self.uvs.shape}")
        if self.indices.ndim != 2 or self.indices.shape[1] != 3 or self.indices.shape[0] < 1:
            raise ValueError(f"indices must be (F>=1, 3), got {self.indices.shape}")
        if int(self.indices.max()) >= v:
            raise ValueError(f"index {int(self.indices.max())} out of range for {v} vertices")
        if self.blendshapes.ndim != 3 or self.blendshapes.shape[1:] != (v, 3):
            raise ValueError(f"blendshapes must be (K, {v}, 3), got {self.blendshapes.shape}")
        if self.blendshapes.shape[0] > MAX_BLENDSHAPES:
            raise ValueError(f"at most {MAX_BLENDSHAPES} blendshapes, got {self.blendshapes.shape[0]}")
        for name in ("positions", "uvs", "blendshapes"):
            if not np.isfinite(getattr(self, name)).all():
                raise ValueError(f"{name} contains NaN or inf")

    @property
    def vertex_count(self) -> int:
        return self.positions.shape[0]

    @property
    def blendshape_count(self) -> int:
        return self.blendshapes.shape[0]

    def deformed_positions(self, weights: np.ndarray) -> np.ndarray:
        """CPU reference of what the vertex shader computes (tests, picking, bounds)."""
        w = np.asarray(weights, dtype=np.float32)
        return self.positions + np.tensordot(w, self.blendshapes, axes=(0, 0))
