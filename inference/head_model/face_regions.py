"""Upper and lower face as soft regions, the target's relaxed face, and regional recombination.

A single training clip rarely shows every combination of what the eyes and the mouth do: the
sample woman cries with her eyes shut and her mouth closed, then laughs with her eyes open and her
mouth open, and never holds her eyes open with her mouth closed — the face every other driver
shows when they relax. A head model trained on such a clip ties eyes and mouth together (one PCA
mode, one latent direction), so a relaxed driver gets half a laugh.

Upper face (brows, eyes, upper cheeks) and lower face (mouth, jaw, chin) move largely
independently, so new, plausible training samples come from recombining real frames: the upper
region of frame A with the lower region of frame B, blended across a soft border at the level of
the nose. The same soft mask is applied to canonical landmarks (mp478 features, blendshape
displacements) and, through the mesh, to UV texels (dynamic textures), so a recombined sample is
consistent in features, geometry and texture.

All coordinates are canonical (``inference.features.alignment``: y up, interocular distance 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.features.expression_signals import (
    LEFT_EYE_CORNERS,
    LOWER_INNER_LIP,
    MOUTH_LEFT,
    MOUTH_RIGHT,
    RIGHT_EYE_CORNERS,
    UPPER_INNER_LIP,
    eye_opening,
)

UPPER_LIP_TOP = 0  # FaceMesh: top of the upper lip on the midline


@dataclass(frozen=True)
class RegionSplit:
    """Where upper turns into lower face: a horizontal band between the eye line and the upper lip.

    ``position`` 0 puts the border on the eye line, 1 on the upper lip; ``softness`` is the band's
    half-width (logistic scale) in interocular units. 0.55 / 0.1 puts the border just above the nose
    tip: the eyelids and brows (> 0.99 upper) never blend with the lips (< 0.02 upper).
    """

    position: float = 0.55
    softness: float = 0.1

    def border_y(self, neutral: np.ndarray) -> float:
        eye_y = float(neutral[list(RIGHT_EYE_CORNERS + LEFT_EYE_CORNERS), 1].mean())
        lip_y = float(neutral[UPPER_LIP_TOP, 1])
        return eye_y + self.position * (lip_y - eye_y)

    def upper_weight(self, points: np.ndarray, neutral: np.ndarray) -> np.ndarray:
        """(P,) in [0, 1]: how much each canonical point belongs to the upper face."""
        y = np.asarray(points, np.float64)[..., 1]
        return (1.0 / (1.0 + np.exp(-(y - self.border_y(neutral)) / self.softness))).astype(np.float32)


# FaceMesh lip contours (mediapipe's FACEMESH_LIPS), split at the corners 61, 291, 78, 308.
LOWER_LIP = (14, 17, 84, 87, 88, 91, 95, 146, 178, 181, 314, 317, 318, 321, 324, 375, 402, 405)
UPPER_LIP = (0, 13, 37, 39, 40, 80, 81, 82, 185, 191, 267, 269, 270, 310, 311, 312, 409, 415)


def below_mouth_weight(neutral: np.ndarray, softness: float = 0.05) -> np.ndarray:
    """(478,) in [0, 1]: how much each canonical point of the neutral face lies below the mouth.
    The lips go by contour (lower lip 1, upper lip 0), not by height: a closed mouth puts both at
    one height. Every other point goes by its height against the mouth-corner line (logistic,
    ``softness`` interocular units), so the cheeks beside the corners are half and half."""
    y = np.asarray(neutral, np.float64)[:, 1]
    corner_y = float(neutral[[MOUTH_RIGHT, MOUTH_LEFT], 1].mean())
    out = 1.0 / (1.0 + np.exp(-(corner_y - y) / softness))
    out[list(LOWER_LIP)] = 1.0
    out[list(UPPER_LIP)] = 0.0
    return out.astype(np.float32)


def texel_upper_weight(split: RegionSplit, neutral: np.ndarray, positions: np.ndarray, faces: np.ndarray,
                       table) -> np.ndarray:
    """(S, S) upper-face weight of every texel: the weight of its surface point on the neutral mesh.

    ``table`` is the atlas' :class:`~inference.head_model.uv_atlas.TexelTable`; texels outside the
    atlas get 0.5 (they are filled, never seen, and blend evenly).
    """
    vertex_w = split.upper_weight(positions, neutral)
    out = np.full(table.size * table.size, 0.5, np.float32)
    out[table.texel] = (vertex_w[faces[table.tri]] * table.bary).sum(1)
    return out.reshape(table.size, table.size)


# ------------------------------------------------------------------------------------ relaxed face

@dataclass(frozen=True)
class RelaxedFaceConfig:
    """Which frames count as relaxed, per region, in absolute tolerances from the clip's extremes.

    Tolerances rather than quantiles: on a recording that is relaxed throughout every frame passes
    and the estimate is the plain median (no selection bias); on a clip of laughing and crying only
    the frames near the closed-mouth / open-eyed extreme do.
    """

    mouth_tolerance: float = 0.03  # lower face: lip gap within this of the 5th percentile (IOD) ...
    width_tolerance: float = 0.06  # ... and mouth width within this of those frames' 5th percentile
    eye_tolerance: float = 0.08  # upper face: eye opening within this of the 95th percentile (gap / width)
    min_frames: int = 3


@dataclass(frozen=True)
class RelaxedFace:
    canonical: np.ndarray  # (478, 3) float32
    upper_frames: np.ndarray  # indices into the canonicals given
    lower_frames: np.ndarray


def relaxed_face(canonical: np.ndarray, split: RegionSplit = RegionSplit(),
                 config: RelaxedFaceConfig = RelaxedFaceConfig()) -> RelaxedFace:
    """A relaxed face assembled per region, for clips that may never show one whole.

    Lower face: the median of frames with a closed, unstretched mouth; upper face: the median of
    frames with open eyes; blended with the region mask. For a driver's calibration recording (a
    relaxed face throughout) this is the median of the whole recording, like ``calibration.neutral``;
    for a target clip of laughing and crying it is the face neither passage shows.
    """
    c = np.asarray(canonical, np.float32)
    if c.ndim != 3 or c.shape[1:] != (478, 3) or len(c) < config.min_frames:
        raise ValueError(f"need at least {config.min_frames} canonical faces (N, 478, 3), got {c.shape}")
    lip_gap = np.linalg.norm(c[:, UPPER_INNER_LIP] - c[:, LOWER_INNER_LIP], axis=-1)
    width = np.linalg.norm(c[:, MOUTH_RIGHT] - c[:, MOUTH_LEFT], axis=-1)
    closed = lip_gap <= np.quantile(lip_gap, 0.05) + config.mouth_tolerance
    lower = np.flatnonzero(closed & (width <= np.quantile(width[closed], 0.05) + config.width_tolerance))
    if len(lower) < config.min_frames:
        lower = np.argsort(lip_gap)[:config.min_frames]
    eyes = eye_opening(c)
    upper = np.flatnonzero(eyes >= np.quantile(eyes, 0.95) - config.eye_tolerance)
    if len(upper) < config.min_frames:
        upper = np.argsort(-eyes)[:config.min_frames]
    lower_face, upper_face = np.median(c[lower], 0), np.median(c[upper], 0)
    w = split.upper_weight(np.median(c, 0), np.median(c, 0))[:, None]
    return RelaxedFace((w * upper_face + (1 - w) * lower_face).astype(np.float32), upper, lower)


# ---------------------------------------------------------------------------------- recombination

@dataclass(frozen=True)
class RecombineConfig:
    """Recombined samples added to the head model's and the animation network's training data."""

    enabled: bool = True
    pairs: int = 1024  # (upper donor, lower donor) pairs drawn from the training frames ...
    relaxed_share: float = 0.25  # ... this share of them from the frames of the relaxed face
    vae_fraction: float = 0.5  # share of each VAE batch that is recombined
    animation_fraction: float = 0.5  # share of each animation batch that is recombined
    relaxed_windows: int = 4  # windows per animation batch of a relaxed driver (features ≈ 0) → relaxed face
    seed: int = 0

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def draw_pairs(frames: np.ndarray, count: int, seed: int) -> np.ndarray:
    """(count, 2) [upper donor, lower donor] frame indices, donors differing where possible."""
    frames = np.asarray(frames, np.int64)
    rng = np.random.default_rng(seed)
    a = rng.choice(frames, count)
    b = rng.choice(frames, count)
    if len(frames) > 1:
        same = a == b
        while same.any():
            b[same] = rng.choice(frames, int(same.sum()))
            same = a == b
    return np.stack([a, b], 1)

