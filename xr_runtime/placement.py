"""Scene transforms (position, wxyz rotation, uniform scale) ↔ 4×4 model matrices.

Placements are kept *rigid* (translation + rotation) while grabbed, because `grab` works on rigid
matrices; the slot's scale is applied separately when drawing.
"""
from __future__ import annotations

import math

import numpy as np

from xr_runtime import math3d
from xr_runtime.avatar_state import HeadPose
from xr_runtime.scene import Transform


def rigid_matrix(position, rotation_wxyz) -> np.ndarray:
    w, x, y, z = rotation_wxyz
    return math3d.pose_matrix(position, (x, y, z, w))


def head_model_matrix(placement: np.ndarray, slot_scale: float, pose: HeadPose) -> np.ndarray:
    """placement · head pose · scale: the model → world matrix the avatar is drawn with."""
    head = rigid_matrix(pose.translation, pose.rotation)
    return (placement @ head @ math3d.scaling(slot_scale * pose.scale)).astype(np.float32)


def matrix_to_quaternion_wxyz(m: np.ndarray) -> tuple[float, float, float, float]:
    """Unit quaternion of the rotation part of a rigid matrix (Shepperd's method, w ≥ 0)."""
    r = np.asarray(m, dtype=np.float64)[:3, :3]
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = math.sqrt(trace + 1.0) * 2
        q = (0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
    q = np.asarray(q)
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return tuple(float(v) for v in q)


def transform_from_rigid(m: np.ndarray, scale: float) -> Transform:
    return Transform(tuple(float(v) for v in np.asarray(m)[:3, 3]), matrix_to_quaternion_wxyz(m), scale)
