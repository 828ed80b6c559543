"""Hands in front of the face, found with MediaPipe Hands (its models ship in the same wheel).

FaceMesh keeps reporting a plausible mouth under a hand, so occlusion cannot be read from the face
landmarks alone; a detected hand whose landmarks fall inside the face outline marks the frame.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np

from core.third_party_logs import NativeStderrFilter, quiet_python_noise


@dataclass(frozen=True)
class HandCheckConfig:
    min_detection_confidence: float = 0.5
    face_margin: float = 0.05  # grow the face hull by this fraction of its size before testing


class HandOcclusionDetector:
    def __init__(self, config: HandCheckConfig = HandCheckConfig()):
        quiet_python_noise()     # and native start-up lines until the first frame (core/third_party_logs)
        self._startup_filter = NativeStderrFilter().start()
        import mediapipe as mp

        self.config = config
        try:
            self._hands = mp.solutions.hands.Hands(
                static_image_mode=False, max_num_hands=2, model_complexity=0,
                min_detection_confidence=config.min_detection_confidence)
        except BaseException:
            self._startup_filter.stop()
            raise

    def hands_px(self, frame_bgr: np.ndarray) -> list[np.ndarray]:
        h, w = frame_bgr.shape[:2]
        try:
            result = self._hands.process(np.ascontiguousarray(frame_bgr[:, :, ::-1]))
        finally:
            self._startup_filter.stop()
        if not result.multi_hand_landmarks:
            return []
        return [np.array([(p.x * w, p.y * h) for p in hand.landmark], dtype=np.float32)
                for hand in result.multi_hand_landmarks]

    def occludes(self, face_px: np.ndarray, hands: list[np.ndarray]) -> bool:
        if not hands:
            return False
        xy = face_px[:, :2].astype(np.float32)
        centre = xy.mean(0)
        hull = cv2.convexHull((centre + (xy - centre) * (1.0 + self.config.face_margin)).astype(np.float32))
        for hand in hands:
            for x, y in hand:
                if cv2.pointPolygonTest(hull, (float(x), float(y)), False) >= 0:
                    return True
        return False

    def close(self) -> None:
        self._startup_filter.stop()
        with contextlib.suppress(Exception):
            self._hands.close()
