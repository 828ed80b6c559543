"""Every quaternion operation Headcast performs, in one place, with the component order in the name.

Two orders meet in this project, and mixing them is the classic silent bug (a rotation about a
different axis, by a different angle):

* **(w, x, y, z)** — Headcast's own: the wire format's head pose (docs/PROTOCOL.md), scene files'
  `rotation`, the runtime's `AvatarPose`, tracking and head-motion code. Every function here takes
  and returns this order unless its name says otherwise.
* **(x, y, z, w)** — OpenXR's `XrQuaternionf` and glTF's node `rotation`. Convert at the boundary
  with `xyzw_to_wxyz` / `wxyz_to_xyzw`, or use the `_xyzw` functions.

Unit quaternions; q and −q are the same rotation (`rotation_to_quaternion` returns w ≥ 0).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

Quaternion = tuple[float, float, float, float]


def xyzw_to_wxyz(q: Sequence[float]) -> Quaternion:
    x, y, z, w = (float(v) for v in q)
    return (w, x, y, z)


def wxyz_to_xyzw(q: Sequence[float]) -> Quaternion:
    w, x, y, z = (float(v) for v in q)
    return (x, y, z, w)


def rotation_to_quaternion(r: np.ndarray) -> Quaternion:
    """Rotation matrix (3×3, or the rotation part of a rigid 4×4) → unit quaternion (w, x, y, z), w ≥ 0."""
    r = np.asarray(r, dtype=np.float64)[:3, :3]
    tr = np.trace(r)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = ((0.25 * s), (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s)
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = ((r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s)
    elif r[1, 1] > r[2, 2]:
        s = np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = ((r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s)
    else:
        s = np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = ((r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s)
    q = np.array(q)
    q /= np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    return tuple(float(v) for v in q)  # type: ignore[return-value]


def quaternion_to_rotation(q: Sequence[float]) -> np.ndarray:
    """(w, x, y, z) → 3×3 rotation matrix (float64). Normalised first; a zero quaternion → identity."""
    w, x, y, z = (float(v) for v in q)
    n = math.sqrt(w * w + x * x + y * y + z * z)
    if n < 1e-12:
        return np.eye(3)
    w, x, y, z = w / n, x / n, y / n, z / n
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def quaternion_xyzw_to_rotation(q: Sequence[float]) -> np.ndarray:
    """(x, y, z, w) — OpenXR's and glTF's order — → 3×3 rotation matrix."""
    return quaternion_to_rotation(xyzw_to_wxyz(q))


def quaternion_multiply(a: Sequence[float], b: Sequence[float]) -> Quaternion:
    """a ⊗ b in (w, x, y, z): the rotation b first, then a."""
    aw, ax, ay, az = a
    bw, bx, by, bz = b
    return (aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw)


def slerp(q0: np.ndarray, q1: np.ndarray, alpha: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions along the shorter arc (either order, as long as
    both share it); alpha outside [0, 1] extrapolates."""
    q0 = np.asarray(q0, dtype=np.float64)
    q1 = np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        out = q0 + alpha * (q1 - q0)
    else:
        theta = math.acos(min(1.0, dot))
        out = (math.sin((1 - alpha) * theta) * q0 + math.sin(alpha * theta) * q1) / math.sin(theta)
    return out / np.linalg.norm(out)


def rotation_vector(q: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) → axis · angle (radians), angle in [0, π]."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q)
    if q[0] < 0:
        q = -q
    s = np.linalg.norm(q[1:])
    if s < 1e-12:
        return np.zeros(3)
    return q[1:] / s * 2.0 * math.atan2(s, q[0])


def quaternion_from_vector(v: np.ndarray) -> np.ndarray:
    """Axis · angle (radians) → unit quaternion (w, x, y, z)."""
    v = np.asarray(v, np.float64)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.array([1.0, 0.0, 0.0, 0.0])
    return np.r_[math.cos(angle / 2), np.sin(angle / 2) * v / angle]
