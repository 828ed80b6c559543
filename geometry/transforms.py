"""4×4 matrices for rendering, in OpenXR's conventions.

Right-handed, +Y up, the viewer looks down −Z, metres. Matrices are numpy float32 arrays in
*math* layout (column vectors: ``p' = M @ p``); they go to GL with ``transpose=True``.
Projection maps eye-space depth to GL clip space z ∈ [−w, w] (glDepthRange 0..1 default).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from geometry.rotations import quaternion_xyzw_to_rotation

Matrix4 = np.ndarray  # (4, 4) float32


def identity() -> Matrix4:
    return np.eye(4, dtype=np.float32)


def translation(x: float, y: float, z: float) -> Matrix4:
    m = identity()
    m[:3, 3] = (x, y, z)
    return m


def scaling(sx: float, sy: float | None = None, sz: float | None = None) -> Matrix4:
    sy = sx if sy is None else sy
    sz = sx if sz is None else sz
    return np.diag(np.array([sx, sy, sz, 1.0], dtype=np.float32))


def rotation_y(radians: float) -> Matrix4:
    c, s = math.cos(radians), math.sin(radians)
    m = identity()
    m[0, 0], m[0, 2], m[2, 0], m[2, 2] = c, s, -s, c
    return m


def quaternion_to_matrix(q: Sequence[float]) -> Matrix4:
    """4×4 rotation of a unit quaternion given as (x, y, z, w) — OpenXR's XrQuaternionf and glTF's
    order (geometry.rotations has every quaternion operation; this is only the 4×4 wrapper)."""
    m = identity()
    m[:3, :3] = quaternion_xyzw_to_rotation(q)
    return m


def pose_matrix(position: Sequence[float], orientation: Sequence[float]) -> Matrix4:
    """Object-to-world matrix of a pose (position xyz, orientation quaternion xyzw)."""
    m = quaternion_to_matrix(orientation)
    m[:3, 3] = [float(v) for v in position]
    return m


def view_matrix(position: Sequence[float], orientation: Sequence[float]) -> Matrix4:
    """World-to-eye matrix for an eye at the given pose (the inverse of its pose matrix).

    A rigid inverse: transpose the rotation rather than a general inversion, which is both
    cheaper and exact for orthonormal rotations.
    """
    rotation = quaternion_to_matrix(orientation)[:3, :3]
    m = identity()
    m[:3, :3] = rotation.T
    m[:3, 3] = -rotation.T @ np.asarray(position, dtype=np.float32)
    return m


def look_at(eye: Sequence[float], target: Sequence[float], up: Sequence[float] = (0, 1, 0)) -> Matrix4:
    """World-to-eye matrix for a camera at `eye` looking at `target`."""
    eye_v = np.asarray(eye, dtype=np.float64)
    forward = np.asarray(target, dtype=np.float64) - eye_v
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, np.asarray(up, dtype=np.float64))
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    m = np.eye(4)
    m[0, :3], m[1, :3], m[2, :3] = right, true_up, -forward
    m[:3, 3] = -m[:3, :3] @ eye_v
    return m.astype(np.float32)


def projection_from_fov(angle_left: float, angle_right: float, angle_up: float,
                        angle_down: float, near: float, far: float) -> Matrix4:
    """Asymmetric off-axis projection from OpenXR's XrFovf angles (radians; left/down < 0)."""
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near} far={far}")
    tan_l, tan_r = math.tan(angle_left), math.tan(angle_right)
    tan_u, tan_d = math.tan(angle_up), math.tan(angle_down)
    width, height = tan_r - tan_l, tan_u - tan_d
    if width <= 0 or height <= 0:
        raise ValueError("field of view has no extent")
    m = np.zeros((4, 4), dtype=np.float32)
    m[0, 0] = 2.0 / width
    m[0, 2] = (tan_r + tan_l) / width
    m[1, 1] = 2.0 / height
    m[1, 2] = (tan_u + tan_d) / height
    m[2, 2] = -(far + near) / (far - near)
    m[2, 3] = -2.0 * far * near / (far - near)
    m[3, 2] = -1.0
    return m


def projection_symmetric(vertical_fov_deg: float, aspect: float, near: float, far: float) -> Matrix4:
    """Symmetric perspective (desktop / headless cameras) as a special case of the FOV form."""
    half_v = math.radians(vertical_fov_deg) / 2
    half_h = math.atan(math.tan(half_v) * aspect)
    return projection_from_fov(-half_h, half_h, half_v, -half_v, near, far)


def project_point(mvp: Matrix4, point: Sequence[float], width: int, height: int) -> tuple[float, float]:
    """Pixel coordinates (x right, y *down*, as in a top-row-first image) of a world point."""
    clip = mvp @ np.array([*point, 1.0], dtype=np.float64)
    ndc = clip[:3] / clip[3]
    return (ndc[0] * 0.5 + 0.5) * width, (0.5 - ndc[1] * 0.5) * height
