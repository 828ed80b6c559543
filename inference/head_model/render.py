"""Software rendering of the textured head for previews (orthographic, z-buffered, numpy only)."""
from __future__ import annotations

import cv2
import numpy as np

from inference.head_model.raster import rasterize, rasterize_batched


def yaw_pitch(yaw_deg: float, pitch_deg: float = 0.0) -> np.ndarray:
    y, p = np.radians(yaw_deg), np.radians(pitch_deg)
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    return rx @ ry


def render_textured(positions: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture_rgb: np.ndarray,
                    size: int = 256, rotation: np.ndarray | None = None, shade: float = 0.25,
                    background: int = 40) -> np.ndarray:
    """Render (size, size, 3) uint8 RGB; positions in canonical units (x left of subject, y up, z to
    the viewer); the head is framed to fill the image."""
    p = positions @ (rotation if rotation is not None else np.eye(3)).T
    centre = (p.min(0) + p.max(0)) / 2
    extent = float((p.max(0) - p.min(0))[:2].max()) * 1.08
    scale = size / extent
    xy = np.stack([(p[:, 0] - centre[0]) * scale + size / 2, size / 2 - (p[:, 1] - centre[1]) * scale], axis=1)
    r = rasterize(xy, faces, size, size, depth=-p[:, 2])
    hit = r.tri_id >= 0
    out = np.full((size, size, 3), background, np.uint8)
    if not hit.any():
        return out
    tri = faces[r.tri_id[hit]]
    b = r.bary[hit]
    uv = (uvs[tri] * b[..., None]).sum(1)
    th, tw = texture_rgb.shape[:2]
    mapx = (uv[:, 0] * tw - 0.5).astype(np.float32).reshape(-1, 1)
    mapy = (uv[:, 1] * th - 0.5).astype(np.float32).reshape(-1, 1)
    col = cv2.remap(texture_rgb, mapx, mapy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)
    # A little Lambert shading so the geometry reads in the preview (the texture carries the light).
    v = p[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = np.clip(n[r.tri_id[hit]] @ np.array([0.3, 0.4, 0.866]), 0, 1)
    col = col.astype(np.float32) * ((1 - shade) + shade * light[:, None])
    out[hit] = np.clip(col, 0, 255).astype(np.uint8)
    return out


def render_in_view(verts_px: np.ndarray, faces: np.ndarray, uvs: np.ndarray, texture_rgba: np.ndarray,
                   height: int, width: int, supersample: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The textured mesh in a source camera's view: ``verts_px`` (V, 3) pixel x, y and depth (smaller
    = nearer, the tracker's convention). Returns premultiplied RGB (H, W, 3) float32 in [0, 1] and
    alpha (H, W) float32 = texture alpha (as seen: alpha_atlas.view_alpha) × coverage, box-filtered from ``supersample``² samples so
    the silhouette is antialiased like the source matte."""
    ss = max(1, int(supersample))
    xy = verts_px[:, :2] * ss
    r = rasterize_batched(xy, faces, height * ss, width * ss, depth=verts_px[:, 2].astype(np.float32))
    hit = r.tri_id >= 0
    rgba = np.zeros((height * ss, width * ss, 4), np.float32)
    if hit.any():
        tri = faces[r.tri_id[hit]]
        uv = (uvs[tri] * r.bary[hit][..., None]).sum(1)
        th, tw = texture_rgba.shape[:2]
        mapx = (uv[:, 0] * tw - 0.5).astype(np.float32).reshape(-1, 1)
        mapy = (uv[:, 1] * th - 0.5).astype(np.float32).reshape(-1, 1)
        tex = texture_rgba if texture_rgba.shape[2] == 4 else np.concatenate(
            [texture_rgba, np.full(texture_rgba.shape[:2] + (1,), 255, np.uint8)], axis=2)
        col = sample_bilinear(tex, mapx[:, 0], mapy[:, 0]) / 255.0
        if texture_rgba.shape[2] == 4 and (texture_rgba[..., 3] < 255).any():
            # The learned alpha is the edge-on value (head_model/alpha_atlas.py): applied by how
            # edge-on each pixel's triangle is seen (its normal's depth component in this view).
            from geometry.edge_alpha import view_alpha

            v = verts_px[faces].astype(np.float64)
            n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
            cos = n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)
            col[:, 3] = view_alpha(col[:, 3], cos[r.tri_id[hit]])
        col[:, :3] *= col[:, 3:4]
        rgba[hit] = col
    if ss > 1:
        rgba = rgba.reshape(height, ss, width, ss, 4).mean((1, 3))
    return rgba[..., :3], rgba[..., 3]


def sample_bilinear(image: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """image (H, W, C) at continuous pixel positions (N,) (pixel centres at integers), clamped to
    the border; float32 (N, C). (cv2.remap limits a map to 32767 entries per side.)"""
    h, w = image.shape[:2]
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    ax, ay = (x - x0)[:, None], (y - y0)[:, None]
    img = image.astype(np.float32)
    top = img[y0, x0] * (1 - ax) + img[y0, x1] * ax
    bot = img[y1, x0] * (1 - ax) + img[y1, x1] * ax
    return (top * (1 - ay) + bot * ay).astype(np.float32)
