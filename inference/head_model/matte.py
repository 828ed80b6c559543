"""Person and head mattes from MediaPipe selfie segmentation (its model ships in the pinned wheel).

The person matte is MediaPipe's soft segmentation (256×256 general model), refined around the
head with a guided filter on the frame's grey image (the network's mask is blobby at 640×360;
the guided filter snaps its edge to the image's own edges, e.g. hair against a wall). The *head*
matte is the person matte above the chin line — the half-plane through FaceMesh's chin point
perpendicular to the head's own up axis, so a tilted head is cut along its own chin — restricted
to the connected region that holds the face. Measured on the sample woman: FaceMesh's face hull
covers about 43 % of this matte; the rest is hair, ears and outline (FACTS.md).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import cv2
import numpy as np

from core.third_party_logs import NativeStderrFilter, quiet_python_noise

CHIN = 152
FOREHEAD = 10


@dataclass(frozen=True)
class MatteConfig:
    model_selection: int = 0  # 0: general 256×256 model, 1: landscape 144×256
    threshold: float = 0.5  # soft matte → binary silhouette
    guided_radius: int = 4  # guided-filter window (pixels at 640×360)
    guided_eps: float = 2e-3


class PersonSegmenter:
    """Wraps ``mp.solutions.selfie_segmentation``; ``person(frame_bgr)`` → float32 (H, W) in [0, 1]."""

    def __init__(self, config: MatteConfig = MatteConfig()):
        quiet_python_noise()
        self._startup_filter = NativeStderrFilter().start()
        import mediapipe as mp

        self.config = config
        try:
            self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=config.model_selection)
        except BaseException:
            self._startup_filter.stop()
            raise

    def person(self, frame_bgr: np.ndarray) -> np.ndarray:
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        try:
            result = self._seg.process(rgb)
        finally:
            self._startup_filter.stop()
        mask = result.segmentation_mask
        if mask is None:
            return np.zeros(frame_bgr.shape[:2], np.float32)
        return refine_matte(np.clip(np.asarray(mask, np.float32), 0, 1), frame_bgr, self.config)

    def close(self) -> None:
        self._startup_filter.stop()
        with contextlib.suppress(Exception):
            self._seg.close()

    def __enter__(self) -> "PersonSegmenter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter (grey guide): edges of ``src`` follow those of ``guide``."""
    k = (2 * radius + 1, 2 * radius + 1)
    box = lambda x: cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mi, mp_ = box(guide), box(src)
    cov = box(guide * src) - mi * mp_
    var = box(guide * guide) - mi * mi
    a = cov / (var + eps)
    b = mp_ - a * mi
    return box(a) * guide + box(b)


def refine_matte(mask: np.ndarray, frame_bgr: np.ndarray, config: MatteConfig) -> np.ndarray:
    grey = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32) / 255.0
    if mask.shape != grey.shape:
        mask = cv2.resize(mask, (grey.shape[1], grey.shape[0]), interpolation=cv2.INTER_LINEAR)
    out = guided_filter(grey, mask, config.guided_radius, config.guided_eps)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def above_chin(shape: tuple[int, int], landmarks_px: np.ndarray) -> np.ndarray:
    """(H, W) bool: the half-plane above the chin line (perpendicular to the chin → forehead axis)."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    return above_chin_at(xs, ys, landmarks_px)


def above_chin_at(x: np.ndarray, y: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """``above_chin`` at pixel positions ``x``, ``y`` (any shape; the pixel (i, j) is at x = i,
    y = j, its centre at + 0.5)."""
    return chin_line_height(x + 0.5, y + 0.5, landmarks_px) >= 0.0


def chin_line_height(x: np.ndarray, y: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
    """Signed distance (pixels) of image points ``x``, ``y`` (continuous: pixel centres at + 0.5)
    from the chin line, along the head's own chin → forehead axis: positive above it."""
    chin = landmarks_px[CHIN, :2].astype(np.float64)
    up = landmarks_px[FOREHEAD, :2].astype(np.float64) - chin
    up /= max(np.linalg.norm(up), 1e-9)
    return (x - chin[0]) * up[0] + (y - chin[1]) * up[1]


def face_hull_mask(shape: tuple[int, int], landmarks_px: np.ndarray) -> np.ndarray:
    hull = cv2.convexHull(landmarks_px[:468, :2].astype(np.float32)).astype(np.int32)
    m = np.zeros(shape, np.uint8)
    cv2.fillConvexPoly(m, hull, 1)
    return m.astype(bool)


def head_matte(person: np.ndarray, landmarks_px: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Soft head matte (H, W) float32: the person matte above the chin, in the region holding the face."""
    region = above_chin(person.shape, landmarks_px)
    soft = person * region
    binary = (soft >= threshold).astype(np.uint8)
    n, labels = cv2.connectedComponents(binary, connectivity=8)
    if n > 2:
        face = face_hull_mask(person.shape, landmarks_px)
        counts = np.bincount(labels[face], minlength=n)
        counts[0] = 0
        keep = labels == int(np.argmax(counts))
        # Keep the soft edge next to the kept component (a few pixels), drop other blobs.
        near = cv2.dilate(keep.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
        soft = soft * near
    return soft.astype(np.float32)


@dataclass(frozen=True)
class MatteQuality:
    ok: bool
    reason: str  # "" when ok
    face_share: float  # face hull area / head matte area (≈ 0.43 on the sample woman)
    cut_by: tuple[str, ...] = ()  # image edges the head matte runs into (top, left, right): hair out of frame


def matte_quality(matte: np.ndarray, landmarks_px: np.ndarray, threshold: float = 0.5) -> MatteQuality:
    """Is this head matte usable to fit the whole head? No person / a segmentation that misses the
    face / a matte no bigger than the face itself (bald head or segmentation failure) are not."""
    face = face_hull_mask(matte.shape, landmarks_px)
    head = matte >= threshold
    fa, ha = int(face.sum()), int(head.sum())
    if ha == 0:
        return MatteQuality(False, "no person found by segmentation", 0.0)
    covered = float((head & face).sum()) / max(fa, 1)
    if covered < 0.8:
        return MatteQuality(False, "segmentation misses the face", fa / ha)
    if fa < 400:
        return MatteQuality(False, "face too small in the frame (person far away)", fa / ha)
    # The head runs out of the picture where its matte reaches an edge (the bottom is the chin line's
    # side: shoulders and neck always reach it). What lies beyond is never seen: the shell keeps the
    # skull prior there, and the manifest says how often (builder whole_head_block).
    cut = tuple(edge for edge, line in (("top", head[0]), ("left", head[:, 0]), ("right", head[:, -1]))
                if line.mean() > 0.02)
    return MatteQuality(True, "", fa / ha, cut)
