"""Development and test stand-ins for the real avatar pipeline: a procedural head and a static source.

Not the product path. `headcast render` uses these only when no inference engine is available
(and says so); tests use them to exercise the render loop without networks or packages.

* `dev_head_mesh()`: a front-facing half-ellipsoid "face" (≈ 16 × 22 cm) with a planar UV
  projection and two blendshapes (0: jaw drop of the lower half, 1: cheek widening).
* `dev_texture()`: an RGBA8 test image with four coloured quadrants (easy to find in renders).
* `StaticAvatarStateSource`: fixed texture / weights per stream, presence settable at run time,
  optionally presence taken from a live `Receiver` stream.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from xr_runtime.avatars.mesh import AvatarMeshData
from xr_runtime.avatars.state import AvatarFrameState, AvatarPose

QUADRANT_COLOURS = ((220, 40, 40), (40, 200, 60), (40, 80, 220), (230, 210, 40))  # TL, TR, BL, BR


def dev_head_mesh(rows: int = 12, cols: int = 10, width: float = 0.16, height: float = 0.22,
                  depth: float = 0.06, blendshapes: int = 2) -> AvatarMeshData:
    """A curved face patch facing +Z, centred on the origin; UV (0, 0) at its top-left.

    Blendshapes beyond the first two are smooth, small bumps (for networks with K > 2 outputs).
    """
    u = np.linspace(0.0, 1.0, cols)
    v = np.linspace(0.0, 1.0, rows)
    uu, vv = np.meshgrid(u, v)
    x = (uu - 0.5) * width
    y = (0.5 - vv) * height
    r2 = ((uu - 0.5) * 2) ** 2 + ((vv - 0.5) * 2) ** 2
    z = depth * np.sqrt(np.clip(1.0 - 0.5 * r2, 0.0, 1.0))
    positions = np.stack([x, y, z], axis=-1).reshape(-1, 3)
    uvs = np.stack([uu, vv], axis=-1).reshape(-1, 2)
    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            i = r * cols + c
            faces += [[i + cols, i + cols + 1, i + 1], [i + cols, i + 1, i]]
    lower = (vv > 0.6).reshape(-1)
    jaw = np.zeros_like(positions)
    jaw[lower, 1] = -0.03 * ((vv.reshape(-1)[lower] - 0.6) / 0.4)
    cheeks = np.zeros_like(positions)
    cheeks[:, 0] = positions[:, 0] * 0.15
    shapes = [jaw, cheeks]
    for k in range(2, blendshapes):
        bump = np.zeros_like(positions)
        bump[:, 2] = 0.004 * np.sin((k + 1) * np.pi * uvs[:, 0]) * np.sin((k % 5 + 1) * np.pi * uvs[:, 1])
        shapes.append(bump)
    return AvatarMeshData(positions, uvs, np.asarray(faces), np.stack(shapes[:blendshapes]) if blendshapes
                          else np.zeros((0, len(positions), 3)))


def dev_texture(size: int = 64, colours=QUADRANT_COLOURS) -> np.ndarray:
    tex = np.full((size, size, 4), 255, dtype=np.uint8)
    h = size // 2
    tex[:h, :h, :3], tex[:h, h:, :3] = colours[0], colours[1]
    tex[h:, :h, :3], tex[h:, h:, :3] = colours[2], colours[3]
    return tex


def solid_texture(rgb, size: int = 64) -> np.ndarray:
    tex = np.full((size, size, 4), 255, dtype=np.uint8)
    tex[..., :3] = rgb
    return tex


@dataclass
class StaticStream:
    texture: np.ndarray
    weights: np.ndarray
    pose: AvatarPose = AvatarPose()
    presence: float = 1.0
    serial: int = 1


class StaticAvatarStateSource:
    """Fixed states per stream (development/test source). Thread-safe setters; `latest` never blocks
    for long (one short lock). Timestamps are "now": the state is continuously re-produced.

    With `receiver`, presence follows that live stream (0 while the stream is lost, ended or
    reports no face): a static face that still fades out and back with the real driver.
    """

    def __init__(self, streams: dict[str, StaticStream] | None = None, receiver=None) -> None:
        self._streams = dict(streams or {})
        self._lock = threading.Lock()
        self._receiver = receiver

    def set_stream(self, stream_id: str, stream: StaticStream) -> None:
        with self._lock:
            self._streams[stream_id] = stream

    def set_presence(self, stream_id: str, presence: float) -> None:
        with self._lock:
            s = self._streams[stream_id]
            self._streams[stream_id] = StaticStream(s.texture, s.weights, s.pose, presence, s.serial)

    def set_texture(self, stream_id: str, texture: np.ndarray) -> None:
        with self._lock:
            s = self._streams[stream_id]
            self._streams[stream_id] = StaticStream(texture, s.weights, s.pose, s.presence, s.serial + 1)

    def latest(self, stream_id: str, t_display_ns: int) -> AvatarFrameState | None:
        with self._lock:
            s = self._streams.get(stream_id)
        if s is None:
            return None
        pose, presence = s.pose, s.presence
        if self._receiver is not None:
            pose, presence = self._from_receiver(stream_id, pose)
        now = time.monotonic_ns()
        return AvatarFrameState(s.texture, s.weights, pose, presence, t_state_ns=now, t_ready_ns=now,
                                texture_serial=s.serial)

    def _from_receiver(self, stream_id: str, fallback: AvatarPose) -> tuple[AvatarPose, float]:
        # Presence only: the tracker's pose lives in the driver's camera frame, and mapping it onto
        # an avatar is the animation engine's job, not this stand-in's.
        status = self._receiver.snapshot().get(stream_id)
        if status is None or status.lost or status.end_of_stream or status.face_lost:
            return fallback, 0.0
        return fallback, 1.0
