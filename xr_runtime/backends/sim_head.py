"""The desktop's simulated head and hand: mouse-look, WASD walking, a mouse-driven grab hand.

Pure logic (no GLFW, no GL) so it can be tested directly. Yaw turns about world +Y, pitch about
the head's x axis (clamped to ±85° so the view never flips); walking stays level, like a person.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geometry.rotations import quaternion_multiply, quaternion_to_rotation
from xr_runtime.scene.hand import HandState

MOVE_KEYS = {"w": (0, 0, -1), "s": (0, 0, 1), "a": (-1, 0, 0), "d": (1, 0, 0), "q": (0, -1, 0), "e": (0, 1, 0)}


@dataclass
class SimulatedHead:
    position: tuple[float, float, float] = (0.0, 1.6, 0.0)
    yaw: float = 0.0          # radians, positive turns left (about +Y)
    pitch: float = 0.0        # radians, positive looks up
    speed: float = 1.5        # m/s
    sensitivity: float = 0.003  # radians per pixel

    @classmethod
    def from_pose(cls, position, rotation_wxyz) -> "SimulatedHead":
        w, x, y, z = rotation_wxyz
        forward = np.array([2 * (x * z + w * y), 2 * (y * z - w * x), 1 - 2 * (x * x + y * y)]) * -1.0
        yaw = math.atan2(-forward[0], -forward[2])
        pitch = math.asin(max(-1.0, min(1.0, forward[1])))
        return cls(tuple(float(v) for v in position), yaw, pitch)

    @property
    def rotation(self) -> tuple[float, float, float, float]:
        """wxyz: yaw about world Y, then pitch about the turned x axis."""
        qy = (math.cos(self.yaw / 2), 0.0, math.sin(self.yaw / 2), 0.0)
        qp = (math.cos(self.pitch / 2), math.sin(self.pitch / 2), 0.0, 0.0)
        return quaternion_multiply(qy, qp)

    def forward(self) -> np.ndarray:
        cp = math.cos(self.pitch)
        return np.array([-math.sin(self.yaw) * cp, math.sin(self.pitch), -math.cos(self.yaw) * cp])

    def look(self, dx_pixels: float, dy_pixels: float) -> None:
        self.yaw -= dx_pixels * self.sensitivity
        self.pitch = max(-math.radians(85), min(math.radians(85), self.pitch - dy_pixels * self.sensitivity))

    def move(self, dt: float, keys: set[str]) -> None:
        local = np.sum([MOVE_KEYS[k] for k in keys if k in MOVE_KEYS] or [(0, 0, 0)], axis=0).astype(float)
        if not local.any():
            return
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        # Level walking: rotate the key direction by yaw only.
        world = np.array([c * local[0] + s * local[2], local[1], -s * local[0] + c * local[2]])
        world /= np.linalg.norm(world)
        self.position = tuple(float(v) for v in np.asarray(self.position) + world * self.speed * dt)

    def ray(self, ndc_x: float, ndc_y: float, tan_half_x: float, tan_half_y: float) -> np.ndarray:
        """World direction through a point of the view (NDC, y up) for a symmetric projection."""
        local = np.array([ndc_x * tan_half_x, ndc_y * tan_half_y, -1.0])
        d = quaternion_to_rotation(self.rotation) @ local
        return d / np.linalg.norm(d)


@dataclass
class MouseHand:
    """A simulated right hand at the mouse ray: squeezes while the right button is held.

    At the press the hand jumps to the distance of the avatar nearest the ray (`pick`), so the
    grab controller finds it; while held, scrolling pushes it away or pulls it closer.
    """

    distance: float = 1.0
    held: bool = False

    def update(self, head: SimulatedHead, direction: np.ndarray, pressed: bool, scroll: float,
               pick) -> dict[str, HandState]:
        origin = np.asarray(head.position, dtype=float)
        if pressed and not self.held:
            picked = pick(origin, direction) if pick is not None else None
            self.distance = picked if picked is not None else 1.0
        self.held = pressed
        if pressed:
            self.distance = max(0.2, min(10.0, self.distance * (1.1 ** scroll)))
        w, x, y, z = head.rotation
        position = origin + direction * self.distance
        return {"right": HandState(True, tuple(float(v) for v in position), (x, y, z, w), 1.0 if pressed else 0.0)}
