"""Grab, move and turn avatars with a controller: squeeze near an avatar, it follows the hand.

Pure logic on 4×4 matrices (no OpenXR, no GL), driven once per frame with the hands from
`FrameInfo.hands` and the avatars' current model matrices. While held, the avatar keeps the
offset it had to the grip at the moment of grabbing, so it moves and turns with the hand; with
`upright` only the hand's turn about the vertical axis is applied (heads should not roll).
Squeeze uses hysteresis (press above `press`, release below `release`) and grabs only on the
press edge, so sweeping an already-squeezed hand through an avatar picks nothing up.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from geometry import transforms
from xr_runtime.scene.hand import HandState


@dataclass(frozen=True)
class GrabConfig:
    press: float = 0.7
    release: float = 0.4
    reach: float = 0.35     # metres between grip and avatar origin to grab it
    upright: bool = True


@dataclass
class _Hand:
    squeezed: bool = False
    held: str | None = None
    offset: np.ndarray = field(default_factory=transforms.identity)   # inverse(grip) @ model


def _yaw_only(matrix: np.ndarray) -> np.ndarray:
    """Keep translation and the rotation about +Y; drop pitch and roll."""
    forward = matrix[:3, :3] @ np.array([0.0, 0.0, 1.0])
    out = transforms.rotation_y(math.atan2(forward[0], forward[2]))
    out[:3, 3] = matrix[:3, 3]
    return out


class GrabController:
    def __init__(self, config: GrabConfig | None = None) -> None:
        self.config = config or GrabConfig()
        self._hands: dict[str, _Hand] = {}

    def held(self) -> dict[str, str]:
        """hand → avatar id for the avatars held now."""
        return {hand: state.held for hand, state in self._hands.items() if state.held is not None}

    def update(self, hands: Mapping[str, HandState],
               placements: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """New model matrices for the avatars that moved this frame (id → matrix)."""
        moved: dict[str, np.ndarray] = {}
        for name, hand in hands.items():
            state = self._hands.setdefault(name, _Hand())
            if not hand.active:
                state.squeezed, state.held = False, None   # lost tracking drops the avatar
                continue
            grip = transforms.pose_matrix(hand.position, hand.orientation)
            was_squeezed = state.squeezed
            threshold = self.config.release if was_squeezed else self.config.press
            state.squeezed = hand.squeeze >= threshold
            if not state.squeezed:
                state.held = None
                continue
            if state.held is None and not was_squeezed:
                state.held = self._nearest(hand.position, placements)
                if state.held is not None:
                    state.offset = np.linalg.inv(grip.astype(np.float64)) @ placements[state.held]
            if state.held is not None and state.held in placements:
                model = (grip.astype(np.float64) @ state.offset).astype(np.float32)
                moved[state.held] = _yaw_only(model) if self.config.upright else model
        return moved

    def _nearest(self, position, placements: Mapping[str, np.ndarray]) -> str | None:
        taken = set(self.held().values())
        best, best_distance = None, self.config.reach
        for avatar_id, model in placements.items():
            if avatar_id in taken:
                continue
            distance = float(np.linalg.norm(model[:3, 3] - np.asarray(position)))
            if distance <= best_distance:
                best, best_distance = avatar_id, distance
        return best
