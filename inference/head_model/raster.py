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


def rasterize_batched(xy: np.ndarray, faces: np.ndarray, height: int, width: int, depth: np.ndarray,
                      eps: float = 1e-7, chunk: int = 4_000_000) -> Raster:
    """Same result as ``rasterize`` with a depth buffer, vectorised over triangles: every
    triangle's bounding-box pixels are expanded into one flat array, tested at once and resolved
    nearest-first per pixel. 20–40× faster for meshes of a few thousand small triangles (the per-
    triangle Python loop dominates ``rasterize`` there): the builder's refinement stage renders
    every training frame with it."""
    xy = np.asarray(xy, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    pa, pb, pc = xy[faces[:, 0]], xy[faces[:, 1]], xy[faces[:, 2]]
    area = (pb[:, 0] - pa[:, 0]) * (pc[:, 1] - pa[:, 1]) - (pb[:, 1] - pa[:, 1]) * (pc[:, 0] - pa[:, 0])
    tri_xy = np.stack([pa, pb, pc], 1)
    x0 = np.maximum(np.floor(tri_xy[..., 0].min(1) - 0.5), 0).astype(np.int64)
    x1 = np.minimum(np.ceil(tri_xy[..., 0].max(1) - 0.5), width - 1).astype(np.int64)
    y0 = np.maximum(np.floor(tri_xy[..., 1].min(1) - 0.5), 0).astype(np.int64)
    y1 = np.minimum(np.ceil(tri_xy[..., 1].max(1) - 0.5), height - 1).astype(np.int64)
    ok = (np.abs(area) >= 1e-12) & (x1 >= x0) & (y1 >= y0)
    tri_id = np.full(height * width, -1, dtype=np.int32)
    bary = np.zeros((height * width, 3), dtype=np.float32)
    zbuf = np.full(height * width, np.inf, dtype=np.float32)
    ids = np.flatnonzero(ok)
    bw = (x1 - x0 + 1)[ids]
    counts = bw * (y1 - y0 + 1)[ids]
    start = 0
    while start < len(ids):
        # Chunks of triangles whose expanded pixels fit the memory bound.
        cum = np.cumsum(counts[start:])
        stop = start + max(1, int(np.searchsorted(cum, chunk, side="right")))
        sel, cnt, widths = ids[start:stop], counts[start:stop], bw[start:stop]
        f = np.repeat(sel, cnt)
        local = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        wrep = np.repeat(widths, cnt)
        gx = x0[f] + local % wrep + 0.5
        gy = y0[f] + local // wrep + 0.5
        a, b, c = pa[f], pb[f], pc[f]
        ar = area[f]
        wa = ((b[:, 0] - gx) * (c[:, 1] - gy) - (b[:, 1] - gy) * (c[:, 0] - gx)) / ar
        wb = ((c[:, 0] - gx) * (a[:, 1] - gy) - (c[:, 1] - gy) * (a[:, 0] - gx)) / ar
        wc = 1.0 - wa - wb
        inside = (wa >= -eps) & (wb >= -eps) & (wc >= -eps)
        f, gx, gy, wa, wb, wc = f[inside], gx[inside], gy[inside], wa[inside], wb[inside], wc[inside]
        tri = faces[f]
        z = (wa * depth[tri[:, 0]] + wb * depth[tri[:, 1]] + wc * depth[tri[:, 2]]).astype(np.float32)
        pix = (gy - 0.5).astype(np.int64) * width + (gx - 0.5).astype(np.int64)
        order = np.lexsort((z, pix))
        pix, z = pix[order], z[order]
        first = np.ones(len(pix), bool)
        first[1:] = pix[1:] != pix[:-1]
        pix, z, o = pix[first], z[first], order[first]
        take = z < zbuf[pix]
        pix, z, o = pix[take], z[take], o[take]
        zbuf[pix] = z
        tri_id[pix] = f[o]
        bary[pix] = np.stack([wa[o], wb[o], wc[o]], 1)
        start = stop
    return Raster(tri_id.reshape(height, width), bary.reshape(height, width, 3), zbuf.reshape(height, width))
