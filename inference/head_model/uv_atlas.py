"""Which triangle (and where in it) each UV-atlas texel lies: computed once per mesh and resolution."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.head_model.raster import rasterize


@dataclass
class TexelTable:
    size: int
    texel: np.ndarray  # (N,) flat indices of covered texels
    tri: np.ndarray  # (N,) triangle per covered texel
    bary: np.ndarray  # (N, 3) float32
    covered: np.ndarray  # (size, size) bool
    face_region: np.ndarray  # (size, size) bool: texels of the tracked face (not the closure)


def texel_table(uvs: np.ndarray, faces: np.ndarray, size: int, n_face_triangles: int) -> TexelTable:
    r = rasterize(uvs * size, faces, size, size)
    covered = r.tri_id >= 0
    texel = np.flatnonzero(covered)
    tri = r.tri_id.ravel()[texel]
    bary = r.bary.reshape(-1, 3)[texel]
    face_region = covered & (r.tri_id < n_face_triangles)
    return TexelTable(size, texel, tri.astype(np.int64), bary.astype(np.float32), covered, face_region)
