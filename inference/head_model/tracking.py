"""Stage 1: track every frame of a source video with the capture node's FaceTracker.

Stores raw pixel landmarks per frame plus whether a hand covers the face; the rigid alignment and
frame rejection happen afterwards (frame_selection.py) because they need the whole sequence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from inference.features.face_tracker import NUM_LANDMARKS, FaceTracker
from inference.head_model.occlusion import HandCheckConfig, HandOcclusionDetector
from inference.head_model.video_io import VideoError, iter_frames, probe


@dataclass(frozen=True)
class TrackConfig:
    hand_check: bool = True  # reject frames with a hand over the face (costs ~15 ms per frame)
    max_frames: int = 0  # 0: every frame
    frame_step: int = 1  # track every n-th frame (the quick preset halves the work)


@dataclass
class TrackedVideo:
    landmarks_px: np.ndarray  # (N, 478, 3) float32; NaN where no face was found
    frame_index: np.ndarray  # (N,) int: index of each tracked frame in the video
    found: np.ndarray  # (N,) bool
    hand_occluded: np.ndarray  # (N,) bool
    width: int
    height: int
    fps: float


def track_video(path: str | Path, config: TrackConfig,
                on_frame: Callable[[], None] | None = None) -> TrackedVideo:
    info = probe(path)
    lms, found, hand, index = [], [], [], []
    detector = HandOcclusionDetector(HandCheckConfig()) if config.hand_check else None
    with FaceTracker() as tracker:
        for i, frame in enumerate(iter_frames(path)):
            if config.max_frames and i >= config.max_frames:
                break
            if i % config.frame_step:
                continue
            index.append(i)
            obs = tracker.track(frame)
            if obs is None:
                lms.append(np.full((NUM_LANDMARKS, 3), np.nan, np.float32))
                found.append(False)
                hand.append(False)
            else:
                lms.append(obs.landmarks_px)
                found.append(True)
                hand.append(bool(detector is not None and detector.occludes(obs.landmarks_px, detector.hands_px(frame))))
            if on_frame is not None:
                on_frame()
    if detector is not None:
        detector.close()
    if not lms:
        raise VideoError(f"{path}: no decodable frame")
    return TrackedVideo(np.stack(lms).astype(np.float32), np.array(index), np.array(found), np.array(hand),
                        info.width, info.height, info.fps)
