"""The driver side of a stream: landmarks → canonical face → neutral → smoothing → range → features.

One object for the capture node and for ``headcast eval transfer``, so the evaluation measures
exactly what a live capture sends. Order and why:

1. canonical alignment (``Mp478Extractor.canonical``), against the current neutral when there is one;
2. the neutral: a file (``calibrate neutral``, the deliberate path) or the online estimator
   (``calibration.online_neutral``: most relaxed stretch of a sliding time window, improves, never
   regresses). Frames are CALIBRATING until it has seen ``settle_s`` of face;
3. per-region One Euro smoothing on the real frame times (``capture.smoothing``);
4. features = gain · (smoothed − neutral), then the per-driver expression range
   (``calibration.expression_range``) scales each region's displacements;
5. the named ARKit-52 weights (``expr52``, issue 16) are measured on the face those features
   describe (neutral + features / gain): smoothed and range-scaled like mp478, so a driver with small
   eyes blinks a full ``eyeBlink`` on every route.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from calibration.expression_range import ExpressionRange, ExpressionRangeConfig
from calibration.neutral import NeutralFace
from calibration.online_neutral import OnlineNeutralConfig, OnlineNeutralEstimator
from inference.features.alignment import Similarity
from inference.features.mp478 import FEATURE_GAIN, Mp478Extractor

from .smoothing import RegionSmoother, SmoothingConfig


@dataclass(frozen=True)
class DriverConfig:
    gain: float = FEATURE_GAIN
    online_neutral: OnlineNeutralConfig = field(default_factory=OnlineNeutralConfig)
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    expression_range: ExpressionRangeConfig = field(default_factory=ExpressionRangeConfig)
    use_range: bool = True


@dataclass(frozen=True)
class DriverFrame:
    features: np.ndarray  # (478, 3) float32, what goes on the wire
    canonical: np.ndarray  # (478, 3) float32, aligned landmarks as tracked (unsmoothed)
    pose: Similarity
    calibrating: bool  # online neutral not settled yet
    neutral_changed: bool  # the neutral this frame is measured against is new
    neutral: np.ndarray | None = None  # (478, 3) the neutral's canonical shape those features are against


class DriverFeatures:
    def __init__(self, config: DriverConfig = DriverConfig(), neutral: NeutralFace | None = None,
                 source: str = "online"):
        self.config = config
        self.fixed_neutral = neutral
        self.online = None if neutral is not None else OnlineNeutralEstimator(config.online_neutral, source=source)
        self.extractor = Mp478Extractor(neutral.canonical if neutral else None, gain=config.gain)
        self.smoother = RegionSmoother(config.smoothing)
        ranges = getattr(neutral, "ranges", None) if neutral is not None else None
        self.range = ExpressionRange(config.expression_range, ranges)
        self.neutral_changes = 0

    @property
    def neutral(self) -> NeutralFace | None:
        return self.fixed_neutral if self.online is None else self.online.estimate

    def process(self, landmarks_px: np.ndarray, t_s: float) -> DriverFrame:
        """Raises ValueError for landmarks that cannot be aligned (the caller counts a lost face)."""
        canon, pose = self.extractor.canonical(landmarks_px)
        changed = False
        calibrating = False
        if self.online is not None:
            before = self.online.estimate
            est = self.online.update(canon, t_s)
            calibrating = not self.online.converged
            if est is not None and est is not before:
                self.extractor.neutral = est.canonical
                self.range.reset()
                self.neutral_changes += 1
                changed = True
        neutral = self.extractor.neutral
        smooth = self.smoother(canon, t_s)
        feats = self.extractor.features_from_canonical(smooth)
        if self.config.use_range and neutral is not None:
            self.range.update(smooth, neutral, t_s)
            feats = self.range.apply(feats)
        return DriverFrame(feats, canon, pose, calibrating, changed, neutral)

    def expr52(self, frame: DriverFrame) -> np.ndarray:
        """The frame's ARKit-52 payload (weights, confidences), zero while there is no neutral."""
        from inference.features.expr52 import SHAPE, expr52_frame

        if frame.neutral is None:  # nothing measured yet, nothing trusted
            return np.zeros(SHAPE, np.float32)
        measured = frame.neutral + frame.features / np.float32(self.config.gain)
        return expr52_frame(measured, frame.neutral)

    def calibration(self) -> NeutralFace | None:
        """The neutral in use with the ranges learned so far (what ``capture --save-neutral`` writes)."""
        n = self.neutral
        if n is None:
            return None
        learned = {k: v for k, v in self.range.ranges.items() if self.range.learned[k]}
        return NeutralFace(n.canonical, n.frames_seen, n.frames_used, n.method, n.source, ranges=learned or None)

    def face_lost(self) -> None:
        self.smoother.reset()
