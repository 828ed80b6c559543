"""Rigid similarity alignment of FaceMesh landmarks into a person-independent canonical frame.

Canonical frame (OpenGL-like head frame): origin at the centroid of the stable points, x towards
the subject's left (image right), y up, z out of the face towards the camera; unit length is the
distance between the two eye centres. The head pose is the similarity that maps canonical
coordinates back into image pixels: ``p_px = scale * R @ p_canon + t``.

Alignment uses only points that expressions barely move (forehead, nose bridge, temples, outer
cheekbones), so a smile or an open mouth does not tilt the estimated head.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geometry.rotations import rotation_to_quaternion

# FaceMesh indices that stay put under expressions.
STABLE_POINTS = np.array([
    10, 151, 9, 8, 168, 6, 197, 195, 5, 4,  # midline: forehead, nose bridge, nose
    127, 356, 234, 454, 21, 251, 54, 284, 103, 332,  # temples and upper forehead sides
    116, 345, 123, 352,  # cheekbones
    33, 263, 133, 362,  # eye corners (move little; they anchor the eye line)
], dtype=np.int64)
RIGHT_EYE_CORNERS = (33, 133)  # subject's right eye: image left
LEFT_EYE_CORNERS = (263, 362)
FOREHEAD, CHIN = 10, 152


@dataclass(frozen=True)
class Similarity:
    """``dst = scale * rotation @ src + translation``."""

    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    scale: float

    def apply(self, pts: np.ndarray) -> np.ndarray:
        return (self.scale * pts @ self.rotation.T + self.translation).astype(np.float32)

    def inverse(self) -> "Similarity":
        rt = self.rotation.T
        return Similarity(rt, -(rt @ self.translation) / self.scale, 1.0 / self.scale)

    def quaternion_wxyz(self) -> tuple[float, float, float, float]:
        return rotation_to_quaternion(self.rotation)


def umeyama(src: np.ndarray, dst: np.ndarray) -> Similarity:
    """Least-squares similarity from src (N,3) to dst (N,3) (Umeyama 1991), proper rotation."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    xs, xd = src - mu_s, dst - mu_d
    var_s = (xs ** 2).sum() / len(src)
    cov = xd.T @ xs / len(src)
    u, d, vt = np.linalg.svd(cov)
    sign = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[2, 2] = -1.0
    rot = u @ sign @ vt
    scale = float(np.trace(np.diag(d) @ sign) / var_s) if var_s > 0 else 1.0
    trans = mu_d - scale * rot @ mu_s
    return Similarity(rot, trans, scale)


def geometric_frame(landmarks_px: np.ndarray) -> Similarity:
    """Canonical → pixel similarity from the face's own geometry (eye line and forehead–chin axis).

    Needs no template, so it works for any person and any first frame.
    """
    p = np.asarray(landmarks_px, dtype=np.float64)
    right_eye = p[list(RIGHT_EYE_CORNERS)].mean(0)
    left_eye = p[list(LEFT_EYE_CORNERS)].mean(0)
    x = left_eye - right_eye  # towards the subject's left = image right
    interocular = float(np.linalg.norm(x))
    if not np.isfinite(interocular) or interocular < 1e-6:
        raise ValueError("degenerate landmarks: eyes coincide")
    x /= interocular
    up = p[FOREHEAD] - p[CHIN]  # pixel y points down, so this points up in the image
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    z = np.cross(x, y)
    # Columns are the canonical axes expressed in pixel coordinates.
    rot = np.stack([x, y, z], axis=1)
    origin = p[STABLE_POINTS].mean(0)
    return Similarity(rot, origin, interocular)


def to_canonical(landmarks_px: np.ndarray, reference: np.ndarray | None = None) -> tuple[np.ndarray, Similarity]:
    """Returns (canonical landmarks (478,3) float32, pose canonical→pixels).

    Without a reference the geometric frame is used; with one (a canonical neutral shape) the
    stable points are aligned to it by Umeyama, which is steadier under expressions.
    """
    pose = geometric_frame(landmarks_px)
    canon = pose.inverse().apply(landmarks_px)
    if reference is not None:
        refine = umeyama(canon[STABLE_POINTS], reference[STABLE_POINTS])
        canon = refine.apply(canon)
        # pose maps canonical→px; canon_new = refine(canon_old) so px = pose(refine^-1(canon_new))
        inv = refine.inverse()
        pose = Similarity(
            pose.rotation @ inv.rotation,
            pose.scale * pose.rotation @ inv.translation + pose.translation,
            pose.scale * inv.scale,
        )
    return canon.astype(np.float32), pose
