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
class TorsoMeshData:
    """Shoulders and upper chest, drawn with the body transform (inference/head_model/torso.py)."""
    positions: np.ndarray  # (T, 3) float32, model space at rest
    uvs: np.ndarray        # (T, 2) float32
    indices: np.ndarray    # (F, 3) uint32
    texture: np.ndarray    # (S, S, 4) uint8 sRGB, static

    def __post_init__(self) -> None:
        object.__setattr__(self, "positions", np.ascontiguousarray(self.positions, dtype=np.float32))
        object.__setattr__(self, "uvs", np.ascontiguousarray(self.uvs, dtype=np.float32))
        object.__setattr__(self, "indices", np.ascontiguousarray(self.indices, dtype=np.uint32))
        tex = np.asarray(self.texture)
        if tex.ndim == 3 and tex.shape[2] == 3:
            tex = np.concatenate([tex, np.full(tex.shape[:2] + (1,), 255, tex.dtype)], axis=2)
        object.__setattr__(self, "texture", np.ascontiguousarray(tex, dtype=np.uint8))
        n = self.positions.shape[0] if self.positions.ndim == 2 else -1
        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or n < 3 or self.uvs.shape != (n, 2):
            raise ValueError(f"torso positions (T>=3, 3) and uvs (T, 2), got {self.positions.shape} {self.uvs.shape}")
        if self.indices.ndim != 2 or self.indices.shape[1] != 3 or not len(self.indices) or int(self.indices.max()) >= n:
            raise ValueError(f"torso indices must be (F>=1, 3) below {n}, got {self.indices.shape}")
        if self.texture.ndim != 3 or self.texture.shape[2] != 4:
            raise ValueError(f"torso texture must be (H, W, 3 or 4), got {tex.shape}")
        if not (np.isfinite(self.positions).all() and np.isfinite(self.uvs).all()):
            raise ValueError("torso positions or uvs contain NaN or inf")


@dataclass(frozen=True)
class AvatarMeshData:
    positions: np.ndarray    # (V, 3) float32
    uvs: np.ndarray          # (V, 2) float32
    indices: np.ndarray      # (F, 3) uint32
    blendshapes: np.ndarray  # (K, V, 3) float32, K may be 0
    # (V,) in [0, 1]: how much each vertex follows the body transform rather than the head's (the
    # neck's base, inference/head_model/torso.py neck_body_weights); None: all head.
    body_weights: np.ndarray | None = None
    torso: TorsoMeshData | None = None

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
        if self.body_weights is not None:
            bw = np.ascontiguousarray(self.body_weights, dtype=np.float32).reshape(-1)
            if bw.shape != (v,) or not np.isfinite(bw).all() or (bw < 0).any() or (bw > 1).any():
                raise ValueError(f"body_weights must be ({v},) in [0, 1]")
            object.__setattr__(self, "body_weights", bw)

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

    def world_positions(self, weights: np.ndarray, model: np.ndarray, body: np.ndarray | None = None) -> np.ndarray:
        """CPU reference of the vertex shader's world positions: the deformed head, each vertex
        blended between the head's ``model`` and the ``body`` matrix by its body weight."""
        p = np.c_[self.deformed_positions(weights), np.ones(self.vertex_count, np.float32)].astype(np.float64)
        head = p @ np.asarray(model, np.float64).T
        if body is None or self.body_weights is None:
            return head[:, :3]
        w = self.body_weights[:, None].astype(np.float64)
        return ((1 - w) * head + w * (p @ np.asarray(body, np.float64).T))[:, :3]
