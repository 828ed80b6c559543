"""preview.png: a contact sheet of the avatar for people (and for reviewing a build by eye).

Row 1: the neutral head from the front, three-quarter, profile and back, and the neutral UV atlas.
Row 2: decoded expressions (the VAE's reconstruction of a few varied training frames).
Row 3: the source frames those expressions came from, cropped around the face, for comparison.
"""
from __future__ import annotations

import cv2
import numpy as np

from inference.head_model.render import render_textured, yaw_pitch


def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def contact_sheet(neutral_pos: np.ndarray, faces: np.ndarray, uvs: np.ndarray, neutral_tex: np.ndarray,
                  expressions: list[tuple[np.ndarray, np.ndarray]], sources: list[np.ndarray],
                  tile: int = 192, whole: tuple | None = None) -> np.ndarray:
    """expressions: (vertex positions, decoded RGB texture) pairs; sources: RGB crops. ``whole``:
    (positions, faces, uvs, texture) of the head with its torso (torso.append_torso) for the first
    row's four views. Returns RGB."""
    p0, f0, uv0, tex0 = whole if whole is not None else (neutral_pos, faces, uvs, neutral_tex)
    row1 = [_label(render_textured(p0, f0, uv0, tex0, tile, yaw_pitch(a)), t)
            for a, t in ((0, "neutral"), (35, "3/4"), (90, "profile"), (180, "back"))]
    row1.append(_label(cv2.resize(neutral_tex, (tile, tile), interpolation=cv2.INTER_AREA), "UV atlas"))
    cols = len(row1)
    row2 = [_label(render_textured(p, faces, uvs, t, tile, yaw_pitch(15)), f"decoded {i + 1}")
            for i, (p, t) in enumerate(expressions[:cols])]
    row3 = [_label(cv2.resize(s, (tile, tile), interpolation=cv2.INTER_AREA), f"source {i + 1}")
            for i, s in enumerate(sources[:cols])]
    blank = np.full((tile, tile, 3), 40, np.uint8)
    rows = [row1] + [r + [blank] * (cols - len(r)) for r in (row2, row3) if r]
    return np.vstack([np.hstack(r) for r in rows])


def face_crop(frame_bgr: np.ndarray, landmarks_px: np.ndarray, margin: float = 0.25) -> np.ndarray:
    x0, y0 = landmarks_px[:, :2].min(0)
    x1, y1 = landmarks_px[:, :2].max(0)
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0) * (0.5 + margin)
    h, w = frame_bgr.shape[:2]
    xa, xb = int(max(cx - half, 0)), int(min(cx + half, w))
    ya, yb = int(max(cy - half, 0)), int(min(cy + half, h))
    return np.ascontiguousarray(frame_bgr[ya:yb, xa:xb, ::-1])


def pick_expressions(weights: np.ndarray, train: np.ndarray, n: int = 5) -> list[int]:
    """Varied training frames for the sheet: the extremes (max and min) of the first blendshape
    components, which are the clip's most distinct expressions."""
    w = weights[train]
    picks: list[int] = []
    for comp in range(min(3, w.shape[1])):
        for g in (train[int(np.argmax(w[:, comp]))], train[int(np.argmin(w[:, comp]))]):
            if int(g) not in picks:
                picks.append(int(g))
    return picks[:n]
