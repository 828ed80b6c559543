"""Shoulder landmarks from MediaPipe Pose (its full landmark model ships in the pinned wheel).

Only the two shoulders are used (BlazePose 11 and 12): whether the clip shows them, and where the
joints lie, which sets the height and the least width of the torso (``torso.py``). Frames are
sampled across the clip, not consecutive, so the tracker runs in static-image mode (no temporal
smoothing that would carry one frame's guess into the next).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np

from core.third_party_logs import NativeStderrFilter, quiet_python_noise

SUBJECT_RIGHT_SHOULDER, SUBJECT_LEFT_SHOULDER = 12, 11  # BlazePose indices


@dataclass(frozen=True)
class Shoulders:
    px: np.ndarray  # (2, 2) pixel x, y: the subject's right shoulder, then the left
    visibility: np.ndarray  # (2,) MediaPipe's visibility in [0, 1]

    def shown(self, width: int, height: int, min_visibility: float) -> bool:
        """Both shoulders visible and inside the image."""
        inside = (self.px[:, 0] >= 0) & (self.px[:, 0] < width) & (self.px[:, 1] >= 0) & (self.px[:, 1] < height)
        return bool(inside.all() and (self.visibility >= min_visibility).all())


class ShoulderTracker:
    """Wraps ``mp.solutions.pose`` (model complexity 1: the landmark model the wheel carries);
    ``shoulders(frame_bgr)`` → `Shoulders` or None where no body is found."""

    def __init__(self) -> None:
        quiet_python_noise()
        self._startup_filter = NativeStderrFilter().start()
        import mediapipe as mp

        try:
            self._pose = mp.solutions.pose.Pose(static_image_mode=True, model_complexity=1,
                                                enable_segmentation=False)
        except BaseException:
            self._startup_filter.stop()
            raise

    def shoulders(self, frame_bgr: np.ndarray) -> Shoulders | None:
        h, w = frame_bgr.shape[:2]
        try:
            result = self._pose.process(cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB))
        finally:
            self._startup_filter.stop()
        if result.pose_landmarks is None:
            return None
        lm = result.pose_landmarks.landmark
        pts = [lm[SUBJECT_RIGHT_SHOULDER], lm[SUBJECT_LEFT_SHOULDER]]
        return Shoulders(np.array([[p.x * w, p.y * h] for p in pts], np.float64),
                         np.array([p.visibility for p in pts], np.float64))

    def close(self) -> None:
        self._startup_filter.stop()
        with contextlib.suppress(Exception):
            self._pose.close()

    def __enter__(self) -> "ShoulderTracker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
