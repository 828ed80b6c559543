"""FaceMesh eye landmarks and the eye conventions of the ``mp478`` stream.

Shared by the capture side (range normalisation, smoothing), the render side (eye state from the
features, eyelid rig and gaze of the avatar mesh, whose first 468 vertices are FaceMesh points) and
the evaluation, which must all mean the same lids. "Right" is the subject's right (image left).
"""
from __future__ import annotations

import numpy as np

# Lid contours, corner to corner, paired in order (upper[i] above lower[i]).
RIGHT_UPPER_LID = (246, 161, 160, 159, 158, 157, 173)
RIGHT_LOWER_LID = (7, 163, 144, 145, 153, 154, 155)
LEFT_UPPER_LID = (466, 388, 387, 386, 385, 384, 398)
LEFT_LOWER_LID = (249, 390, 373, 374, 380, 381, 382)
RIGHT_CORNERS, LEFT_CORNERS = (33, 133), (263, 362)  # (outer, inner)
RIGHT_IRIS, LEFT_IRIS = (468, 469, 470, 471, 472), (473, 474, 475, 476, 477)  # centre first
EYES = {"right": (RIGHT_UPPER_LID, RIGHT_LOWER_LID, RIGHT_CORNERS, RIGHT_IRIS),
        "left": (LEFT_UPPER_LID, LEFT_LOWER_LID, LEFT_CORNERS, LEFT_IRIS)}

# The standard open-eye lid gap (canonical y, IOD units, mean of the middle three pairs) an
# eye-range-normalised mp478 stream refers to: a driver's full closure arrives as a lid gap change
# of exactly this (relaxed, the sample man measures 0.144 both eyes, the woman 0.125 / 0.107).
EYE_GAP_STD = 0.13
# Half the corner-to-corner eye width in IOD units (both sample faces: 0.21-0.23): the unit of gaze.
EYE_HALF_WIDTH_STD = 0.22


def mid_pairs(upper, lower):
    return tuple(zip(upper[2:5], lower[2:5]))


def lid_gap(points: np.ndarray, upper, lower) -> np.ndarray:
    """Mean vertical gap of the middle three lid pairs, (..., N, 3) → (...)."""
    p = np.asarray(points, np.float64)
    return np.mean([p[..., u, 1] - p[..., lo, 1] for u, lo in mid_pairs(upper, lower)], axis=0)


def iris_offset(points: np.ndarray, corners, iris) -> np.ndarray:
    """Iris centre relative to the midpoint of the eye corners, in half eye widths: (..., 2) x, y."""
    p = np.asarray(points, np.float64)
    mid = 0.5 * (p[..., corners[0], :] + p[..., corners[1], :])
    half = 0.5 * np.linalg.norm(p[..., corners[0], :] - p[..., corners[1], :], axis=-1)
    return (p[..., iris[0], :2] - mid[..., :2]) / np.maximum(half, 1e-6)[..., None]


def eyes_from_features(features: np.ndarray, gain: float) -> tuple[np.ndarray, np.ndarray]:
    """(closure (2,), gaze (2, 2)) of an eye-range-normalised mp478 frame (gain · (face − neutral)),
    right eye first: closure = −Δgap / (gain · EYE_GAP_STD) (0 = the driver's relaxed opening,
    1 = shut), gaze = the iris centre's displacement relative to the corners' midpoint in standard
    half eye widths (x towards the subject's left, y up)."""
    f = np.asarray(features, np.float64).reshape(-1, 3)
    if f.shape[0] < 478 or not gain > 0:
        return np.zeros(2), np.zeros((2, 2))
    closure, gaze = [], []
    for side in ("right", "left"):
        upper, lower, corners, iris = EYES[side]
        dgap = np.mean([f[u, 1] - f[lo, 1] for u, lo in mid_pairs(upper, lower)]) / gain
        closure.append(-dgap / EYE_GAP_STD)
        mid = 0.5 * (f[corners[0], :2] + f[corners[1], :2])
        gaze.append((f[iris[0], :2] - mid) / gain / EYE_HALF_WIDTH_STD)
    c = np.clip(np.nan_to_num(np.array(closure)), -0.5, 1.2)
    g = np.clip(np.nan_to_num(np.array(gaze)), -1.0, 1.0)
    return c, g
