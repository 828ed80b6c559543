"""Dynamic textures: each kept frame unwrapped into the UV atlas through its tracked mesh.

Visibility per texel: its triangle must face the camera (cosine above a floor, so grazing,
smeared texels are not trusted) and it must be the nearest surface at its pixel (a splatted depth
buffer of all front-facing texels; catches the nose hiding a cheek). Unseen texels are filled from
the neutral texture, whose own holes (back of the head) are filled by push-pull diffusion.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.head_model.head_mesh import HeadMesh
from inference.head_model.uv_atlas import TexelTable


@dataclass(frozen=True)
class UnwrapConfig:
    min_cos: float = 0.25  # triangles more oblique than ~75° to the camera are not sampled
    depth_tolerance: float = 0.08  # interocular units a texel may lie behind the nearest surface
    border_px: float = 1.0  # keep away from the image border


def triangle_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    v = verts[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    return n / (np.linalg.norm(n, axis=1, keepdims=True) + 1e-12)


def texel_projection(verts_canon: np.ndarray, rotation: np.ndarray, translation: np.ndarray, scale: float,
                     mesh: HeadMesh, table: TexelTable, image_hw: tuple[int, int], config: UnwrapConfig
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Where each covered texel lands in the frame: (pos (N, 3) pixel x, y and depth, visible (N,)
    bool) for the texels of ``table`` (module docstring: facing, nearest, inside the border)."""
    h, w = image_hw
    px = scale * verts_canon @ rotation.T + translation  # (V, 3): x, y pixels, z pixel depth
    # Camera looks along +z in pixel space, so "towards the camera" is -z; in canonical space that is:
    to_cam = rotation.T @ np.array([0.0, 0.0, -1.0])
    cos = triangle_normals(verts_canon, mesh.faces) @ to_cam
    tri = table.tri
    corners = px[mesh.faces[tri]]  # (N, 3, 3)
    pos = (corners * table.bary[:, :, None]).sum(1)  # (N, 3)
    ok = (cos[tri] > config.min_cos) & (pos[:, 0] >= config.border_px) & (pos[:, 0] <= w - 1 - config.border_px) \
        & (pos[:, 1] >= config.border_px) & (pos[:, 1] <= h - 1 - config.border_px)
    # Depth test against a splatted z-buffer (1-pixel cells) of the front-facing texels.
    cell = np.where(ok, np.floor(pos[:, 1]).astype(np.int64) * w + np.floor(pos[:, 0]).astype(np.int64), 0)
    zbuf = np.full(h * w, np.inf)
    np.minimum.at(zbuf, cell[ok], pos[ok, 2])
    ok &= pos[:, 2] <= zbuf[cell] + config.depth_tolerance * scale
    return pos, ok


def unwrap_frame(frame_bgr: np.ndarray, verts_canon: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                 scale: float, mesh: HeadMesh, table: TexelTable, config: UnwrapConfig = UnwrapConfig()
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Returns (texture RGB uint8 (S, S, 3), valid mask (S, S) bool)."""
    s = table.size
    pos, ok = texel_projection(verts_canon, rotation, translation, scale, mesh, table, frame_bgr.shape[:2], config)
    mapx = np.full(s * s, -1.0, np.float32)
    mapy = np.full(s * s, -1.0, np.float32)
    mapx[table.texel] = pos[:, 0]
    mapy[table.texel] = pos[:, 1]
    rgb = np.ascontiguousarray(frame_bgr[:, :, ::-1])
    tex = cv2.remap(rgb, mapx.reshape(s, s), mapy.reshape(s, s), cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    valid = np.zeros(s * s, bool)
    valid[table.texel[ok]] = True
    return tex, valid.reshape(s, s)


def push_pull_fill(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Fill texels where mask is False with a smooth extrapolation of the valid ones (pyramid
    push-pull); valid texels are returned unchanged."""
    img = image.astype(np.float32)
    m = mask.astype(np.float32)
    levels = [(img * m[..., None], m)]
    while min(levels[-1][1].shape) > 1:
        ci, cm = levels[-1]
        hh, ww = (ci.shape[0] + 1) // 2, (ci.shape[1] + 1) // 2
        levels.append((cv2.resize(ci, (ww, hh), interpolation=cv2.INTER_AREA),
                       cv2.resize(cm, (ww, hh), interpolation=cv2.INTER_AREA)))
    ci, cm = levels[-1]
    filled = ci / np.maximum(cm, 1e-8)[..., None]
    for ci, cm in reversed(levels[:-1]):
        up = cv2.resize(filled, (ci.shape[1], ci.shape[0]), interpolation=cv2.INTER_LINEAR)
        own = ci / np.maximum(cm, 1e-8)[..., None]
        a = np.clip(cm, 0, 1)[..., None]
        filled = a * own + (1 - a) * up
    out = np.where(mask[..., None], image.astype(np.float32), filled)
    return out


@dataclass(frozen=True)
class HairRegions:
    """Where a whole head's unseen texels are hair: ``above`` (S, S) bool, the shell above the
    nose tip's height (the back of the head down to about the ears' lower ends); and where the
    clip shows that hair's colour: ``top`` (S, S) bool, the shell above the forehead landmark."""

    above: np.ndarray
    top: np.ndarray


FOREHEAD_LANDMARK, NOSE_TIP_LANDMARK = 10, 1
MIN_HAIR_TEXELS = 20


def hair_regions(positions: np.ndarray, faces: np.ndarray, table, face_points: np.ndarray) -> HairRegions:
    """``positions`` (V, 3) the neutral head mesh (y up), ``face_points`` its tracked face's
    neutral points (FaceMesh order), ``table`` its texel table (uv_atlas.texel_table)."""
    s = table.size
    y = np.full(s * s, -np.inf, np.float32)
    y[table.texel] = (positions[faces[table.tri]][..., 1] * table.bary).sum(1)
    y = y.reshape(s, s)
    shell = table.covered & ~table.face_region
    return HairRegions(shell & (y > face_points[NOSE_TIP_LANDMARK, 1]), shell & (y > face_points[FOREHEAD_LANDMARK, 1]))


def hair_colour(med: np.ndarray, seen: np.ndarray, hair: HairRegions) -> np.ndarray | None:
    """The median colour of the seen top of the head (the hair, or the scalp of a bald person),
    else of the seen shell above the nose tip; None when the clip shows too little of either."""
    for region in (hair.top, hair.above):
        texels = med[seen & region]
        if len(texels) >= MIN_HAIR_TEXELS:
            return np.median(texels, axis=0)
    return None


def dilate_islands(image: np.ndarray, covered: np.ndarray) -> np.ndarray:
    """Every texel outside the atlas's islands (``covered`` False: the gutters) takes the value of
    the nearest covered texel, so bilinear samples at an island's border read only that island."""
    if covered.all() or not covered.any():
        return image
    _, labels = cv2.distanceTransformWithLabels((~covered).astype(np.uint8), cv2.DIST_L2, 5,
                                                labelType=cv2.DIST_LABEL_PIXEL)
    ys, xs = np.nonzero(covered)  # the labels number the covered texels in this (row-major) order
    gy, gx = np.nonzero(~covered)
    nearest = labels[gy, gx] - 1
    out = image.copy()
    out[gy, gx] = image[ys[nearest], xs[nearest]]
    return out


def neutral_texture(textures: np.ndarray, valid: np.ndarray, split_row: int | None = None,
                    hair: HairRegions | None = None, covered: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per-texel median of the neutral frames' valid samples, holes push-pull filled.

    ``split_row`` separates the face region (above) from the back-of-head strip (below): each is
    filled from its own texels, so the unseen back of the head takes the colour of the visible
    hair and neck around it, not of the face skin that sits next to it in the atlas.
    ``hair`` (whole heads): the unseen shell above the nose tip takes the colour of the seen top
    of the head first, and only the rest (the neck) is diffused — diffusion alone carried the skin
    of the ears and temples round the back of a short-haired man's head (the single_face clip).
    ``covered`` (the atlas's islands): the gutters between them take the nearest island texel's
    colour (dilate_islands) instead of a diffusion of both sides — the shell's first ring lies
    at the cap strip's edge, next to the gutter under the face island's chin, and sampled that
    mix as a thin light seam along the forehead.
    Returns (RGB uint8 (S, S, 3), seen mask)."""
    t = textures.astype(np.float32)
    t[~valid] = np.nan
    with np.errstate(all="ignore"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            med = np.nanmedian(t, axis=0)
    seen = valid.any(0)
    med = np.nan_to_num(med)
    observed = seen
    if hair is not None:
        colour = hair_colour(med, seen, hair)
        if colour is not None:
            seed = hair.above & ~seen
            med[seed] = colour
            seen = seen | seed
    if split_row is None:
        filled = push_pull_fill(med, seen)
    else:
        top, bottom = slice(0, split_row), slice(split_row, None)
        filled = np.concatenate([
            push_pull_fill(med[top], seen[top]) if seen[top].any() else med[top],
            push_pull_fill(med[bottom], seen[bottom]) if seen[bottom].any() else push_pull_fill(med, seen)[bottom],
        ])
    if covered is not None:
        filled = dilate_islands(filled, covered)
    return np.clip(np.round(filled), 0, 255).astype(np.uint8), observed
