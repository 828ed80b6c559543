"""A 360° turntable of an avatar package (neutral and smiling), and its hole measure.

The head turns about the vertical axis through its centre in front of a fixed orthographic
camera (framing fixed by the neutral head's bounding sphere, so the video does not breathe).
*Holes* at a yaw: pixels inside the head's outline (the silhouette with its inner holes filled)
whose alpha is below 0.5 — the background showing through the head. The issue's bar: ≤ 1 % of
the outline's area at every yaw.

The smiling face: the package carries the decoder, not the encoder, so it is found in the latent
space: steps of ±2 along each latent axis from the idle latent, decoded; the one whose mouth
corners (FaceMesh 61, 291) lie farthest apart with the least mouth opening.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from inference.head_model.render import render_in_view
from inference.head_model.torso import append_torso

MOUTH_CORNERS = (61, 291)
LIPS = (13, 14)


@dataclass(frozen=True)
class TurntableConfig:
    size: int = 256
    yaws: int = 72  # views per turn (every 5°)
    pitch_deg: float = 0.0
    background: tuple[int, int, int] = (40, 40, 40)


def faces_of(pkg, idle_z: torch.Tensor) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"neutral": (texture RGBA, weights), "smiling": ...} from the package's decoder, starting
    at the idle latent (``inference.engine.package_loader.idle_z``)."""
    z0 = idle_z.reshape(-1).float()
    m = pkg.mesh
    neutral_v = m.positions

    def score(w: np.ndarray) -> float:
        v = neutral_v + np.einsum("k,kvc->vc", w, m.blendshapes)
        width = np.linalg.norm(v[MOUTH_CORNERS[0]] - v[MOUTH_CORNERS[1]])
        opening = np.linalg.norm(v[LIPS[0]] - v[LIPS[1]])
        return float(width - 0.5 * opening)

    with torch.inference_mode():
        tex0, w0 = pkg.decoder(z0)
        best, best_s = (tex0, w0), score(w0.numpy())
        for k in range(z0.numel()):
            for step in (-2.0, 2.0):
                z = z0.clone()
                z[k] += step
                tex, w = pkg.decoder(z)
                s = score(w.numpy())
                if s > best_s:
                    best, best_s = (tex, w), s
    return {"neutral": (tex0.numpy(), w0.numpy().astype(np.float32)),
            "smiling": (best[0].numpy(), best[1].numpy().astype(np.float32))}


def _yaw(deg: float) -> np.ndarray:
    y = np.radians(deg)
    return np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])


def render_turn(pkg, texture: np.ndarray, weights: np.ndarray, yaw_deg: float, config: TurntableConfig,
                with_torso: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 (S, S, 3) over the background, and alpha (S, S) float32, at one yaw (the head
    alone, framed alone, with ``with_torso=False``)."""
    m = pkg.mesh
    v = m.positions + np.einsum("k,kvc->vc", weights, m.blendshapes)
    rest, faces, uvs = m.positions, m.indices.astype(np.int64), m.uvs
    if m.torso is not None and with_torso:  # the whole avatar turns, shoulders too (at rest body and head agree)
        t = m.torso
        v, faces, uvs, texture = append_torso(v, faces, uvs, texture, t.positions, t.indices, t.uvs, t.texture)
        rest = np.concatenate([rest, t.positions])
    centre = (rest.min(0) + rest.max(0)) / 2
    radius = float(np.linalg.norm(rest - centre, axis=1).max())
    p = (v - centre) @ _yaw(yaw_deg).T
    s = config.size / (2.05 * radius)
    # Camera looks along −z (model +z towards the viewer); image y down.
    px = np.stack([p[:, 0] * s + config.size / 2, config.size / 2 - p[:, 1] * s, -p[:, 2] * s], 1)
    rgb, alpha = render_in_view(px, faces, uvs, texture, config.size, config.size, 2)
    bg = np.array(config.background, np.float32) / 255.0
    out = rgb + (1 - alpha[..., None]) * bg
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8), alpha


def hole_fraction(alpha: np.ndarray) -> float:
    """Share of the outline's area (silhouette, inner holes filled) with alpha < 0.5."""
    sil = (alpha >= 0.5).astype(np.uint8)
    if not sil.any():
        return 1.0
    contours, _ = cv2.findContours(sil, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    filled = np.zeros_like(sil)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    inside = filled.astype(bool)
    return float(((alpha < 0.5) & inside).sum() / max(inside.sum(), 1))


def turntable(pkg, idle_z: torch.Tensor, config: TurntableConfig = TurntableConfig(), on_frame=None):
    """Yields (face name, yaw, RGB frame, hole fraction) for a full turn with each face."""
    for name, (tex, w) in faces_of(pkg, idle_z).items():
        for i in range(config.yaws):
            yaw = 360.0 * i / config.yaws
            rgb, alpha = render_turn(pkg, tex, w, yaw, config)
            if on_frame is not None:
                on_frame()
            yield name, yaw, rgb, hole_fraction(alpha)
