"""Reading source videos frame by frame, with errors that say what is wrong with the file."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from core.errors import HeadcastError


class VideoError(HeadcastError, ValueError):
    """The input video is missing, unreadable or holds no decodable frame."""


@dataclass(frozen=True)
class VideoInfo:
    path: str
    frames: int  # container's count; may be approximate, decoding is authoritative
    fps: float
    width: int
    height: int


def probe(path: str | Path) -> VideoInfo:
    p = Path(path)
    if not p.is_file():
        raise VideoError(f"{p}: no such video file")
    if p.stat().st_size == 0:
        raise VideoError(f"{p}: file is empty")
    cap = cv2.VideoCapture(str(p))
    try:
        if not cap.isOpened():
            raise VideoError(f"{p}: not a readable video (corrupt or unsupported container)")
        ok, frame = cap.read()
        if not ok or frame is None:
            raise VideoError(f"{p}: no decodable frame (corrupt or truncated video)")
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        return VideoInfo(str(p), count, fps if fps > 0 else 30.0, frame.shape[1], frame.shape[0])
    finally:
        cap.release()


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """BGR uint8 frames in order; stops at the first frame that fails to decode."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise VideoError(f"{path}: not a readable video (corrupt or unsupported container)")
    try:
        while True:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            yield frame
    finally:
        cap.release()
