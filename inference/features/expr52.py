"""Feature kind ``expr52``: the 52 ARKit blendshape weights (+ a confidence each) from FaceMesh landmarks.

Measured on canonical landmarks (``alignment.to_canonical``: x towards the subject's left, y up,
z towards the camera, interocular distance 1) *relative to the driver's own neutral face* (the
same neutral ``mp478`` subtracts), so a relaxed face gives zeros for every driver. Each weight is a
geometric displacement divided by a fixed, person-independent full-scale value (interocular units,
or a fraction of the driver's own neutral eye opening for the lids) and clipped to [0, 1], the
range ARKit, Live Link Face, Unified Expressions and the OpenXR extensions all use.

The full-scale values were set so that the 98th percentile of each raw ratio over both sample
clips (the woman: crying, yawning, laughing; the man: neutral → smile) lands near 0.9 rather than
saturating (first guesses from single expressions clipped the man's smile at 1 for 76 % of his
frames, flattening exactly the signal transfer is scored on). They are not ARKit's own
calibration — nobody outside Apple has that — so an avatar driven from an iPhone's weights sees a
differently scaled driver; the animation network's training augmentation (gain and per-dimension
gain jitter) is what absorbs that.

Confidence per weight: 1 × the face confidence for what landmarks measure well (jaw, lips, lids,
gaze, brows); 0.5 for weak measures (cheeks, nose, lip roll/press/shrug, jaw sideways/forward);
0 for what a 2-D landmark tracker cannot see at all (tongue, ``mouthClose``, cheek puff's air).
Receivers treat an unsure weight as "towards neutral" (``weights × confidence``).
"""
from __future__ import annotations

import numpy as np

from .expr52_names import ARKIT52, INDEX

SHAPE = (52, 2)  # column 0 weight in [0, 1], column 1 confidence in [0, 1]
# Bumped whenever a weight's definition changes: avatars' expr52 maps (builder stage kindmaps) are
# fitted on these exact measurements, so the stage key includes it.
VERSION = 1

# FaceMesh indices ("right" = the subject's right, image left).
_MOUTH_R, _MOUTH_L = 61, 291
_UPPER_INNER, _LOWER_INNER = 13, 14
_UPPER_OUTER, _LOWER_OUTER = 0, 17
_UPPER_LIP_R, _UPPER_LIP_L = 40, 270  # upper lip, between centre and corners
_LOWER_LIP_R, _LOWER_LIP_L = 91, 321
_CHIN = 152
_EYE_R, _EYE_L = (33, 133), (263, 362)  # (outer, inner) corners
_LIDS_R = ((159, 145), (158, 153), (160, 144))  # (upper, lower)
_LIDS_L = ((386, 374), (385, 380), (387, 373))
_LOWER_LID_R, _LOWER_LID_L = 145, 374
_IRIS_R, _IRIS_L = 468, 473
_BROW_INNER_R, _BROW_INNER_L = (107, 66), (336, 296)
_BROW_OUTER_R, _BROW_OUTER_L = (70, 63), (300, 293)
_CHEEK_R, _CHEEK_L = 205, 425
_NOSE_WING_R, _NOSE_WING_L = 98, 327

# Full-scale displacements (module docstring).
FULL_SCALE = {
    "jaw_open": 0.30, "smile": 0.40, "frown": 0.18, "stretch": 0.15, "pucker": 0.12, "mouth_shift": 0.13,
    "lip_up": 0.20, "lip_down": 0.11, "press": 0.03, "roll": 0.06, "shrug": 0.12,
    "blink": 0.85, "wide": 1.5,  # fractions of the neutral lid opening
    "squint": 0.03, "look_x": 0.25, "look_y": 0.15,  # gaze: fraction of eye width
    "brow_up": 0.08, "brow_down": 0.11, "cheek_squint": 0.09, "cheek_puff": 0.04, "sneer": 0.10,
    "jaw_side": 0.10, "jaw_forward": 0.12, "jaw_chin": 0.30,
}
JAW_MIX = (0.7, 0.3)  # inner-lip gap, chin drop (0.5/0.5 measured worse: the man's jaw_open transfer r −0.52)
_WEAK = frozenset({"cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "mouthRollLower",
                   "mouthRollUpper", "mouthPressLeft", "mouthPressRight", "mouthShrugLower", "mouthShrugUpper",
                   "jawLeft", "jawRight", "jawForward", "mouthDimpleLeft", "mouthDimpleRight"})
_BLIND = frozenset({"tongueOut", "mouthClose", "cheekPuff"})
BASE_CONFIDENCE = np.array([0.0 if n in _BLIND else 0.5 if n in _WEAK else 1.0 for n in ARKIT52], np.float32)


def _pos(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 1.0)


def _lid_gap(p: np.ndarray, lids) -> np.ndarray:
    return np.mean([p[..., u, 1] - p[..., l, 1] for u, l in lids], axis=0)


def _gaze(p: np.ndarray, eye, iris: int) -> tuple[np.ndarray, np.ndarray]:
    """Iris offset from the eye-corner midpoint, in eye widths: (x towards the subject's left, y up)."""
    a, b = p[..., eye[0], :], p[..., eye[1], :]
    width = np.maximum(np.linalg.norm(a - b, axis=-1), 1e-6)
    off = p[..., iris, :] - 0.5 * (a + b)
    return off[..., 0] / width, off[..., 1] / width


def expr52_weights(canonical: np.ndarray, neutral: np.ndarray) -> np.ndarray:
    """(..., 478, 3) canonical shapes and the driver's (478, 3) neutral → (..., 52) weights in [0, 1]."""
    p = np.asarray(canonical, dtype=np.float64)
    n = np.asarray(neutral, dtype=np.float64)
    if p.shape[-2:] != (478, 3) or n.shape != (478, 3):
        raise ValueError(f"expected canonical (..., 478, 3) and neutral (478, 3), got {p.shape} and {n.shape}")
    d = p - n  # displacement of every point from the neutral face
    s = FULL_SCALE
    out = np.zeros(p.shape[:-2] + (52,), np.float64)

    def put(name: str, value) -> None:
        out[..., INDEX[name]] = _pos(value)

    # -- jaw and mouth --------------------------------------------------------------------------
    gap = (p[..., _UPPER_INNER, 1] - p[..., _LOWER_INNER, 1]) - (n[_UPPER_INNER, 1] - n[_LOWER_INNER, 1])
    chin_drop = -d[..., _CHIN, 1]
    put("jawOpen", np.maximum(gap, 0.0) / s["jaw_open"] * JAW_MIX[0] + chin_drop / s["jaw_chin"] * JAW_MIX[1])
    put("jawLeft", d[..., _CHIN, 0] / s["jaw_side"])
    put("jawRight", -d[..., _CHIN, 0] / s["jaw_side"])
    put("jawForward", d[..., _CHIN, 2] / s["jaw_forward"])
    for side, corner, sign in (("Left", _MOUTH_L, 1.0), ("Right", _MOUTH_R, -1.0)):
        out_x = sign * d[..., corner, 0]  # outwards
        up_y = d[..., corner, 1]
        put(f"mouthSmile{side}", (np.maximum(out_x, 0.0) + np.maximum(up_y, 0.0)) / s["smile"])
        put(f"mouthFrown{side}", -up_y / s["frown"])
        put(f"mouthStretch{side}", (out_x - np.maximum(up_y, 0.0)) / s["stretch"])
        put(f"mouthDimple{side}", (out_x - np.abs(up_y)) / s["stretch"] * 0.5)
    width = np.linalg.norm(p[..., _MOUTH_L, :] - p[..., _MOUTH_R, :], axis=-1)
    width0 = np.linalg.norm(n[_MOUTH_L] - n[_MOUTH_R])
    narrow = (width0 - width) / s["pucker"]
    put("mouthPucker", narrow)
    put("mouthFunnel", narrow * np.clip(gap / 0.1, 0.0, 1.0))
    shift = 0.5 * (d[..., _MOUTH_L, 0] + d[..., _MOUTH_R, 0])
    put("mouthLeft", shift / s["mouth_shift"])
    put("mouthRight", -shift / s["mouth_shift"])
    for side, up_pt, low_pt in (("Left", _UPPER_LIP_L, _LOWER_LIP_L), ("Right", _UPPER_LIP_R, _LOWER_LIP_R)):
        put(f"mouthUpperUp{side}", d[..., up_pt, 1] / s["lip_up"])
        put(f"mouthLowerDown{side}", (-d[..., low_pt, 1] - np.maximum(chin_drop, 0.0) * 0.5) / s["lip_down"])
    upper_thick = (p[..., _UPPER_OUTER, 1] - p[..., _UPPER_INNER, 1]) - (n[_UPPER_OUTER, 1] - n[_UPPER_INNER, 1])
    lower_thick = (p[..., _LOWER_INNER, 1] - p[..., _LOWER_OUTER, 1]) - (n[_LOWER_INNER, 1] - n[_LOWER_OUTER, 1])
    closed = np.clip(1.0 - np.maximum(gap, 0.0) / 0.05, 0.0, 1.0)
    put("mouthRollUpper", -upper_thick / s["roll"])
    put("mouthRollLower", -lower_thick / s["roll"])
    put("mouthPressLeft", closed * -(upper_thick + lower_thick) / s["press"] * 0.5)
    put("mouthPressRight", closed * -(upper_thick + lower_thick) / s["press"] * 0.5)
    put("mouthShrugLower", d[..., _LOWER_OUTER, 1] / s["shrug"])
    put("mouthShrugUpper", closed * d[..., _UPPER_OUTER, 1] / s["shrug"])
    # mouthClose, tongueOut, cheekPuff: not measurable from landmarks (confidence 0); stay 0.

    # -- eyes -----------------------------------------------------------------------------------
    for side, eye, lids, lower, iris, out_sign in (("Left", _EYE_L, _LIDS_L, _LOWER_LID_L, _IRIS_L, 1.0),
                                                    ("Right", _EYE_R, _LIDS_R, _LOWER_LID_R, _IRIS_R, -1.0)):
        g, g0 = _lid_gap(p, lids), float(_lid_gap(n, lids))
        if g0 > 1e-3:  # a neutral with shut (or degenerate) lids gives no scale to measure against
            put(f"eyeBlink{side}", (g0 - g) / (g0 * s["blink"]))
            put(f"eyeWide{side}", (g - g0) / (g0 * s["wide"]))
        put(f"eyeSquint{side}", d[..., lower, 1] / s["squint"])
        gx, gy = _gaze(p, eye, iris)
        gx0, gy0 = _gaze(n, eye, iris)
        dx, dy = out_sign * (gx - gx0), gy - gy0
        put(f"eyeLookOut{side}", dx / s["look_x"])
        put(f"eyeLookIn{side}", -dx / s["look_x"])
        put(f"eyeLookUp{side}", dy / s["look_y"])
        put(f"eyeLookDown{side}", -dy / s["look_y"])

    # -- brows, cheeks, nose --------------------------------------------------------------------
    inner = 0.5 * (d[..., list(_BROW_INNER_R), 1].mean(-1) + d[..., list(_BROW_INNER_L), 1].mean(-1))
    put("browInnerUp", inner / s["brow_up"])
    for side, outer, inner_pts, cheek, wing in (("Left", _BROW_OUTER_L, _BROW_INNER_L, _CHEEK_L, _NOSE_WING_L),
                                                 ("Right", _BROW_OUTER_R, _BROW_INNER_R, _CHEEK_R, _NOSE_WING_R)):
        put(f"browOuterUp{side}", d[..., list(outer), 1].mean(-1) / s["brow_up"])
        put(f"browDown{side}", -d[..., list(outer + inner_pts), 1].mean(-1) / s["brow_down"])
        put(f"cheekSquint{side}", d[..., cheek, 1] / s["cheek_squint"])
        put(f"noseSneer{side}", d[..., wing, 1] / s["sneer"])
    return np.nan_to_num(out, nan=0.0).astype(np.float32)


def expr52_frame(canonical: np.ndarray, neutral: np.ndarray, face_confidence: float = 1.0) -> np.ndarray:
    """One frame's ``expr52`` payload: (52, 2) float32, [:, 0] weights, [:, 1] confidences."""
    out = np.empty(SHAPE, np.float32)
    out[:, 0] = expr52_weights(canonical, neutral)
    out[:, 1] = BASE_CONFIDENCE * float(np.clip(face_confidence, 0.0, 1.0))
    return out


def effective_weights(payload: np.ndarray) -> np.ndarray:
    """What a receiver uses: weight × confidence (an unsure weight leans towards neutral), (..., 52)."""
    a = np.asarray(payload, np.float32)
    return np.clip(a[..., 0], 0.0, 1.0) * np.clip(a[..., 1], 0.0, 1.0)


def payload_from_weights(weights, confidences=None) -> np.ndarray:
    """(52,) weights (+ optional (52,) confidences, default 1) → the (52, 2) wire payload, clipped."""
    w = np.clip(np.nan_to_num(np.asarray(weights, np.float32).reshape(52), nan=0.0), 0.0, 1.0)
    c = np.ones(52, np.float32) if confidences is None else np.asarray(confidences, np.float32).reshape(52)
    c = np.clip(np.nan_to_num(c, nan=0.0), 0.0, 1.0)
    return np.stack([w, c], axis=1).astype(np.float32)
