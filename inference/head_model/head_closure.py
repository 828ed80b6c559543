"""Procedural closure of the face mesh into a whole head: skull, back of the head and a neck stub.

The face covers only the front; in VR the viewer walks around the avatar, so the boundary of the
face is joined to a cap of rings that sweep over the skull to a pole behind and below the head. The
cap lies on a star-shaped surface around the skull centre: the union of an ellipsoid (skull) and a
capped vertical cylinder (neck), sized from the person's own face with anthropometric ratios
(head length/width ≈ 1.3). Near the face, cap vertices follow the boundary's expression motion
with a decaying weight, so jaw opening drags the neck/jaw skin along instead of tearing it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SIDE_POINTS = (234, 454)  # outer face points level with the ears
FOREHEAD, CHIN = 10, 152


@dataclass(frozen=True)
class ClosureConfig:
    rings: int = 14  # rings from the face boundary to the pole
    follow_power: float = 2.0  # cap vertices follow boundary motion with weight (1 - t)^power
    # Neutral placement: ring vertices blend from the face boundary onto the surface with weight
    # (1 - t)^blend_power (None: follow_power, today's skull). A fitted shell (head_shell.py) stands
    # further off the face than the ellipsoid, so it is reached sooner (blend_power 5).
    blend_power: float | None = None
    # The pole sits opposite the face's mean direction, so the rings' meridians spread evenly over
    # the crown, sides and neck (a pole placed lower leaves a ridge over the top of the head).


@dataclass(frozen=True)
class HeadShape:
    centre: np.ndarray  # (3,)
    radii: np.ndarray  # (3,) ellipsoid half-axes x, y, z
    neck_radius: float
    neck_bottom: float  # y of the neck's cut


def fit_head_shape(neutral: np.ndarray) -> HeadShape:
    side = neutral[list(SIDE_POINTS)]
    width = float(abs(side[1, 0] - side[0, 0]))
    height = float(neutral[FOREHEAD, 1] - neutral[CHIN, 1])
    centre = np.array([side[:, 0].mean(), side[:, 1].mean() + 0.14 * height, side[:, 2].mean() - 0.1 * width])
    radii = np.array([0.55 * width, 0.63 * height, 0.72 * width])
    return HeadShape(centre, radii, 0.4 * width, float(neutral[CHIN, 1] - 0.35 * height))


def surface_radius(shape: HeadShape, d: np.ndarray) -> np.ndarray:
    """Distance from the centre to the head surface along unit directions d (..., 3)."""
    ell = 1.0 / np.sqrt(((d / shape.radii) ** 2).sum(-1))
    horiz = np.linalg.norm(d[..., [0, 2]], axis=-1)
    wall = np.where(horiz > 1e-6, shape.neck_radius / np.maximum(horiz, 1e-6), np.inf)
    down = -d[..., 1]
    bottom = np.where(down > 1e-6, (shape.centre[1] - shape.neck_bottom) / np.maximum(down, 1e-6), np.inf)
    neck = np.where(down > 0, np.minimum(wall, bottom), 0.0)
    return np.maximum(ell, neck)


def _slerp(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    dot = np.clip((a * b).sum(-1, keepdims=True), -0.9999, 0.9999)
    om = np.arccos(dot)
    return (np.sin((1 - t) * om) * a + np.sin(t * om) * b) / np.sin(om)


def build_cap(neutral: np.ndarray, boundary: np.ndarray, config: ClosureConfig,
              radius_fn=None) -> tuple[np.ndarray, np.ndarray, HeadShape]:
    """Cap positions (rings+1, B, 3) (ring 0 = the boundary vertices, last ring = the pole) and the
    follow weight per ring (rings+1,). ``radius_fn(d)`` (unit directions → distance from the skull
    centre) replaces the skull's ``surface_radius`` (a fitted ``head_shell.HeadShell.radius``)."""
    shape = fit_head_shape(neutral)
    radius = radius_fn if radius_fn is not None else (lambda d: surface_radius(shape, d))
    blend_power = config.follow_power if config.blend_power is None else config.blend_power
    p0 = neutral[boundary].astype(np.float64)
    d0 = p0 - shape.centre
    d0 /= np.linalg.norm(d0, axis=-1, keepdims=True)
    on_surface0 = shape.centre + radius(d0)[:, None] * d0
    pole = -d0.mean(0)
    pole /= np.linalg.norm(pole)
    rings = [p0]
    follow = [1.0]
    for r in range(1, config.rings + 1):
        t = r / config.rings
        d = _slerp(d0, np.broadcast_to(pole, d0.shape), t) if r < config.rings else np.broadcast_to(pole, d0.shape)
        surf = shape.centre + radius(d)[..., None] * d
        w = (1.0 - t) ** config.follow_power
        rings.append(surf + (1.0 - t) ** blend_power * (p0 - on_surface0))
        follow.append(w)
    return np.stack(rings).astype(np.float32), np.array(follow, dtype=np.float32), shape
