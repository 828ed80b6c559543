"""Interpretable per-frame expression signals from canonical FaceMesh landmarks.

One place that says what "mouth open", "smile" or "eye closed" means in landmark terms, so the
capture tests, the neutral calibration and the transfer evaluation all measure the same thing.
Input is a canonical shape from :func:`inference.features.alignment.to_canonical` (x towards the
subject's left, y up, interocular distance = 1), so every signal is in interocular units and
comparable across people and camera distances.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

# FaceMesh indices. "right" is the subject's right (image left).
UPPER_INNER_LIP, LOWER_INNER_LIP = 13, 14
MOUTH_RIGHT, MOUTH_LEFT = 61, 291
NOSE_TIP, CHIN = 1, 152
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (263, 362)
# (upper lid, lower lid) pairs across the middle of each eye.
RIGHT_LID_PAIRS = ((159, 145), (158, 153), (160, 144))
LEFT_LID_PAIRS = ((386, 374), (385, 380), (387, 373))
RIGHT_BROW = (70, 63, 105, 66, 107)
LEFT_BROW = (300, 293, 334, 296, 336)
RIGHT_IRIS_CENTRE, LEFT_IRIS_CENTRE = 468, 473


@dataclass(frozen=True)
class ExpressionSignals:
    """All values in interocular units except the eye openings (lid gap / eye width)."""

    mouth_open: float  # inner-lip gap
    jaw_open: float  # nose tip to chin
    smile_width: float  # mouth corner to mouth corner
    eye_open_right: float  # lid gap over eye width; ~0.25-0.35 open, < 0.1 closed
    eye_open_left: float
    brow_raise: float  # brow height above the eye-corner line

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, n) for n in self.names()], dtype=np.float64)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _dist(p: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(p[a] - p[b]))


def _eye_opening(p: np.ndarray, corners: tuple[int, int], lids) -> np.ndarray:
    """Lid gap over eye width for (..., 478, 3) canonical shapes → (...)."""
    width = np.linalg.norm(p[..., corners[0], :] - p[..., corners[1], :], axis=-1)
    # Vertical (canonical y) gap rather than 3-D distance: a closed lid keeps some depth offset.
    gap = np.mean([p[..., u, 1] - p[..., l, 1] for u, l in lids], axis=0)
    return np.where(width > 1e-9, gap / np.maximum(width, 1e-9), 0.0)


def eye_opening(canonical: np.ndarray) -> np.ndarray:
    """Mean opening of both eyes (as ``eye_open_right`` / ``eye_open_left``) of (..., 478, 3) shapes."""
    p = np.asarray(canonical, dtype=np.float64)
    return 0.5 * (_eye_opening(p, RIGHT_EYE_CORNERS, RIGHT_LID_PAIRS) + _eye_opening(p, LEFT_EYE_CORNERS, LEFT_LID_PAIRS))


def compute_signals(canonical: np.ndarray) -> ExpressionSignals:
    p = np.asarray(canonical, dtype=np.float64)
    if p.shape != (478, 3):
        raise ValueError(f"expected canonical landmarks of shape (478, 3), got {p.shape}")
    eye_line_y = p[list(RIGHT_EYE_CORNERS + LEFT_EYE_CORNERS), 1].mean()
    brow_y = p[list(RIGHT_BROW + LEFT_BROW), 1].mean()
    return ExpressionSignals(
        mouth_open=_dist(p, UPPER_INNER_LIP, LOWER_INNER_LIP),
        jaw_open=_dist(p, NOSE_TIP, CHIN),
        smile_width=_dist(p, MOUTH_RIGHT, MOUTH_LEFT),
        eye_open_right=float(_eye_opening(p, RIGHT_EYE_CORNERS, RIGHT_LID_PAIRS)),
        eye_open_left=float(_eye_opening(p, LEFT_EYE_CORNERS, LEFT_LID_PAIRS)),
        brow_raise=float(brow_y - eye_line_y),
    )


def signal_deltas(canonical: np.ndarray, neutral: np.ndarray) -> ExpressionSignals:
    """Signals relative to a person's neutral face: what the expression adds, identity removed."""
    a, b = compute_signals(canonical).as_array(), compute_signals(neutral).as_array()
    return ExpressionSignals(*(a - b))
