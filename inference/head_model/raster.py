"""A small, exact triangle rasteriser in numpy: per pixel the covering triangle and its barycentrics.

Used twice: once in UV space to tabulate which triangle owns each atlas texel, and for the preview
renders. Pixel (row r, col c) is sampled at the continuous point (c + 0.5, r + 0.5).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Raster:
    tri_id: np.ndarray  # (H, W) int32, -1 where no triangle covers the pixel
    bary: np.ndarray  # (H, W, 3) float32 barycentrics of the covering triangle
    depth: np.ndarray  # (H, W) float32, +inf where empty (smaller = nearer)


def rasterize(xy: np.ndarray, faces: np.ndarray, height: int, width: int,
              depth: np.ndarray | None = None, eps: float = 1e-7) -> Raster:
    """xy: (V, 2) continuous pixel coordinates; depth: (V,) or None (then first triangle wins, which
    is fine for non-overlapping UV layouts)."""
    xy = np.asarray(xy, dtype=np.float64)
    tri_id = np.full((height, width), -1, dtype=np.int32)
    bary = np.zeros((height, width, 3), dtype=np.float32)
    zbuf = np.full((height, width), np.inf, dtype=np.float32)
    for f, (a, b, c) in enumerate(np.asarray(faces, dtype=np.int64)):
        pa, pb, pc = xy[a], xy[b], xy[c]
        area = (pb[0] - pa[0]) * (pc[1] - pa[1]) - (pb[1] - pa[1]) * (pc[0] - pa[0])
        if abs(area) < 1e-12:
            continue
        x0 = max(int(np.floor(min(pa[0], pb[0], pc[0]) - 0.5)), 0)
        x1 = min(int(np.ceil(max(pa[0], pb[0], pc[0]) - 0.5)), width - 1)
        y0 = max(int(np.floor(min(pa[1], pb[1], pc[1]) - 0.5)), 0)
        y1 = min(int(np.ceil(max(pa[1], pb[1], pc[1]) - 0.5)), height - 1)
        if x0 > x1 or y0 > y1:
            continue
        gx, gy = np.meshgrid(np.arange(x0, x1 + 1) + 0.5, np.arange(y0, y1 + 1) + 0.5)
        # Barycentrics from signed sub-areas (edge functions); sign-agnostic via division by area.
        wa = ((pb[0] - gx) * (pc[1] - gy) - (pb[1] - gy) * (pc[0] - gx)) / area
        wb = ((pc[0] - gx) * (pa[1] - gy) - (pc[1] - gy) * (pa[0] - gx)) / area
        wc = 1.0 - wa - wb
        inside = (wa >= -eps) & (wb >= -eps) & (wc >= -eps)
        if not inside.any():
            continue
        sub_t = tri_id[y0:y1 + 1, x0:x1 + 1]
        sub_z = zbuf[y0:y1 + 1, x0:x1 + 1]
        if depth is None:
            z = np.zeros_like(wa)
            take = inside & (sub_t < 0)
        else:
            z = wa * depth[a] + wb * depth[b] + wc * depth[c]
            take = inside & (z < sub_z)
        if not take.any():
            continue
        sub_t[take] = f
        sub_z[take] = z[take]
        sub_b = bary[y0:y1 + 1, x0:x1 + 1]
        sub_b[take] = np.stack([wa[take], wb[take], wc[take]], axis=-1)
    return Raster(tri_id, bary, zbuf)
