"""Feature kind ``mp478``: person-independent expression features from FaceMesh landmarks.

features = GAIN * (canonical landmarks − the driver's own canonical neutral face)

* Canonical alignment (``alignment.to_canonical``) removes head pose and face size: the canonical
  frame has interocular distance 1, so faces at any distance give the same numbers. With a neutral
  available the stable points are Umeyama-aligned to it, which keeps an open mouth from tilting the
  estimated head.
* Subtracting the driver's own neutral removes identity (face shape, eye spacing, mouth width):
  what is left is what the expression moved.
* All 478 points are kept, including the eyelids (159/145, 386/374, ...) and the 10 iris points
  (468-477): eye closure and gaze survive unchanged. Nothing is dropped or PCA-reduced here; the
  animation network learns what to use.

GAIN: in interocular units expression displacements are small (eyelid closing ≈ 0.08, a wide
smile moves the mouth corners ≈ 0.15-0.2, yawning drops the jaw ≈ 0.3). A fixed gain of 5 brings
these to 0.4-1.5, i.e. O(1) inputs for the network, while tracker jitter (≈ 0.003) stays ≈ 0.015.
It is fixed, not data-dependent, so features from every driver and every session share one scale;
the avatar manifest records it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streaming.protocol import FEATURE_SHAPES, FeatureKind, HeadPose

from .alignment import Similarity, to_canonical

FEATURE_GAIN = 5.0
FEATURE_SHAPE = FEATURE_SHAPES[FeatureKind.MP478]


@dataclass(frozen=True)
class Mp478Result:
    features: np.ndarray  # (478, 3) float32, gain * (canonical - neutral)
    canonical: np.ndarray  # (478, 3) float32, aligned landmarks (interocular = 1)
    pose: Similarity  # canonical → image pixels


def head_pose(pose: Similarity) -> HeadPose:
    """The wire form of a canonical→pixel similarity (translation in pixels, scale in px per IOD).

    The pixel frame is OpenCV's camera frame (x right, y down, z away from the camera) while the
    canonical head frame has y up and z towards the camera, so a face looking straight into the
    camera has a rotation of 180° about x.
    """
    return HeadPose(
        rotation=pose.quaternion_wxyz(),
        translation=tuple(float(v) for v in pose.translation),  # type: ignore[arg-type]
        scale=float(pose.scale),
    )


class Mp478Extractor:
    """Turns tracker landmarks into ``mp478`` features relative to a neutral face.

    The neutral may be set later (online calibration converging): until then ``extract`` measures
    against whatever neutral it has, or returns zeros when it has none.
    """

    def __init__(self, neutral: np.ndarray | None = None, gain: float = FEATURE_GAIN):
        self.gain = float(gain)
        self._neutral: np.ndarray | None = None
        self.neutral = neutral

    @property
    def neutral(self) -> np.ndarray | None:
        return self._neutral

    @neutral.setter
    def neutral(self, value: np.ndarray | None) -> None:
        if value is not None:
            value = np.asarray(value, dtype=np.float32)
            if value.shape != FEATURE_SHAPE or not np.isfinite(value).all():
                raise ValueError(f"neutral face must be a finite {FEATURE_SHAPE} array, got {value.shape}")
        self._neutral = value

    def canonical(self, landmarks_px: np.ndarray) -> tuple[np.ndarray, Similarity]:
        """Raises ValueError for landmarks that cannot be aligned (non-finite or degenerate)."""
        lm = np.asarray(landmarks_px, dtype=np.float32)
        if lm.shape != FEATURE_SHAPE or not np.isfinite(lm).all():
            raise ValueError(f"landmarks must be a finite {FEATURE_SHAPE} array")
        with np.errstate(invalid="ignore", divide="ignore"):
            canon, pose = to_canonical(lm, reference=self._neutral)
        if not (np.isfinite(canon).all() and np.isfinite(pose.rotation).all() and np.isfinite(pose.scale)):
            raise ValueError("degenerate landmarks: alignment is undefined")
        return canon, pose

    def extract(self, landmarks_px: np.ndarray) -> Mp478Result:
        canon, pose = self.canonical(landmarks_px)
        if self._neutral is None:
            feats = np.zeros(FEATURE_SHAPE, dtype=np.float32)
        else:
            feats = (self.gain * (canon - self._neutral)).astype(np.float32)
        return Mp478Result(features=feats, canonical=canon, pose=pose)

    def features_from_canonical(self, canonical: np.ndarray) -> np.ndarray:
        """Re-expresses an already aligned shape against the current neutral (calibration replays)."""
        if self._neutral is None:
            return np.zeros(FEATURE_SHAPE, dtype=np.float32)
        return (self.gain * (np.asarray(canonical, dtype=np.float32) - self._neutral)).astype(np.float32)
