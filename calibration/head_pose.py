"""The driver's head motion relative to their own reference pose, smoothed, for the avatar's head.

The tracker's pose (``streaming.protocol.HeadPose``) maps the canonical face frame into the
driver's *camera*: it says where the camera sees the head, not how the head moved. An avatar stands
elsewhere, facing someone else, so what it needs is the head's rotation relative to how the driver
normally holds it, expressed in the head's own frame (x to the subject's left, y up, z out of the
face): with R_ref the reference and R_t the current camera-frame rotation, R_ref · Q = R_t, so
Q = R_refᵀ · R_t. Turning to one's own left is then a positive rotation about +y for any camera
placement. Translation likewise: the head's displacement in its reference frame, in interocular
units (image motion divided by the reference scale; depth from the change of scale).

The reference is estimated per stream from its first good frames (an average rotation, then
frozen), like the online neutral face: the driver looks at their screen at the start. Smoothing is a
One Euro filter (Casiez et al. 2012) with the *real* frame interval — jitter at rest is suppressed,
fast turns pass with little lag. Large rotations are clamped: a tracker that flips for a frame must
not spin the avatar's head.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geometry.rotations import quaternion_from_vector, quaternion_to_rotation, rotation_to_quaternion, rotation_vector


def average_rotation(quaternions: np.ndarray) -> np.ndarray:
    """Rotation closest to all (Markley et al. 2007: principal eigenvector of Σ q qᵀ); signs free."""
    q = np.asarray(quaternions, np.float64)
    _, vecs = np.linalg.eigh(q.T @ q)
    out = vecs[:, -1]
    return out if out[0] >= 0 else -out


class OneEuroFilter:
    """One Euro low-pass filter for a vector signal, with the real time step of every sample."""

    def __init__(self, min_cutoff_hz: float, beta: float, d_cutoff_hz: float = 1.0) -> None:
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff_hz, beta, d_cutoff_hz
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    @staticmethod
    def _alpha(cutoff: float, dt: float) -> float:
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t_s <= self._t:
            # First sample, or a clock that did not advance (duplicate frame): take it as it is.
            if self._x is None:
                self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t_s
            return self._x.copy()
        dt = t_s - self._t
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        cutoff = self.min_cutoff + self.beta * float(np.linalg.norm(self._dx))
        a = self._alpha(cutoff, dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t_s
        return self._x.copy()


@dataclass(frozen=True)
class HeadMotionConfig:
    reference_frames: int = 20  # good frames averaged into the reference pose, then frozen
    max_angle_deg: float = 60.0  # rotations beyond this (from the reference) are clamped to it
    max_translation: float = 3.0  # interocular units (~19 cm): the head stays near its slot
    translation: bool = True  # False: rotation only (the avatar's head stays on its slot)
    # One Euro: rest jitter suppressed below ~1 Hz, fast turns let through (beta scales with speed).
    rotation_min_cutoff_hz: float = 1.0
    rotation_beta: float = 0.5  # per rad/s
    translation_min_cutoff_hz: float = 1.0
    translation_beta: float = 0.3  # per IOD/s
    forget_after_s: float = 5.0  # a stream silent this long gets a new reference when it returns


@dataclass(frozen=True)
class HeadMotion:
    rotation: tuple[float, float, float, float]  # w, x, y, z, in the head's own (canonical) frame
    translation: tuple[float, float, float]  # interocular units, head frame
    referenced: bool  # False until the reference pose exists (motion is identity until then)


IDENTITY_MOTION = HeadMotion((1.0, 0.0, 0.0, 0.0), (0.0, 0.0, 0.0), False)


class HeadMotionTracker:
    """Per stream: camera-frame poses in → smoothed head motion relative to the reference out."""

    def __init__(self, config: HeadMotionConfig = HeadMotionConfig()) -> None:
        self.config = config
        self._collected: list[tuple[np.ndarray, np.ndarray, float]] = []
        self._ref: tuple[np.ndarray, np.ndarray, float] | None = None  # (R_ref, t_ref px, scale px/IOD)
        self._rot = OneEuroFilter(config.rotation_min_cutoff_hz, config.rotation_beta)
        self._trans = OneEuroFilter(config.translation_min_cutoff_hz, config.translation_beta)
        self._last_t: float | None = None
        self.motion = IDENTITY_MOTION
        self.rejected = 0  # poses that were not finite or not proper rotations

    @property
    def referenced(self) -> bool:
        return self._ref is not None

    def reset(self) -> None:
        self._collected.clear()
        self._ref = None
        self._rot.reset()
        self._trans.reset()
        self.motion = IDENTITY_MOTION

    def update(self, rotation_wxyz, translation_px, scale: float, t_ns: int) -> HeadMotion:
        """One tracked frame's pose (camera frame, as on the wire) at capture time ``t_ns``."""
        cfg = self.config
        q = np.asarray(rotation_wxyz, np.float64)
        t = np.asarray(translation_px, np.float64)
        norm = float(np.linalg.norm(q)) if q.shape == (4,) else 0.0
        if not (np.isfinite(q).all() and np.isfinite(t).all() and t.shape == (3,) and math.isfinite(scale)
                and scale > 0 and 0.5 < norm < 1.5):
            self.rejected += 1
            return self.motion
        t_s = t_ns / 1e9
        if self._last_t is not None and t_s - self._last_t > cfg.forget_after_s:
            self.reset()
        self._last_t = t_s
        r = quaternion_to_rotation(q / norm)
        if self._ref is None:
            self._collected.append((q / norm, t, float(scale)))
            if len(self._collected) < cfg.reference_frames:
                return self.motion
            qs = np.array([c[0] for c in self._collected])
            self._ref = (quaternion_to_rotation(average_rotation(qs)),
                         np.median([c[1] for c in self._collected], 0), float(np.median([c[2] for c in self._collected])))
            self._collected.clear()
        r_ref, t_ref, s_ref = self._ref
        head = rotation_vector(np.asarray(rotation_to_quaternion(r_ref.T @ r)))
        angle = float(np.linalg.norm(head))
        limit = math.radians(cfg.max_angle_deg)
        if angle > limit:
            head *= limit / angle
        head = self._rot(head, t_s)
        move = np.zeros(3)
        if cfg.translation:
            # Camera frame (x right, y down, z away): image motion in IOD, depth from the scale
            # (a larger head came closer, towards -z); then into the reference head frame.
            d_cam = np.array([(t[0] - t_ref[0]) / s_ref, (t[1] - t_ref[1]) / s_ref,
                              -(scale / s_ref - 1.0) * _DEPTH_PER_SCALE])
            move = np.clip(r_ref.T @ d_cam, -cfg.max_translation, cfg.max_translation)
            move = self._trans(move, t_s)
        self.motion = HeadMotion(tuple(float(v) for v in quaternion_from_vector(head)),  # type: ignore[arg-type]
                                 tuple(float(v) for v in move), True)  # type: ignore[arg-type]
        return self.motion


# A head 10 % larger in the image came ~10 % closer: at a typical webcam distance of ~9 IOD
# (55-60 cm) that is ~0.9 IOD towards the camera.
_DEPTH_PER_SCALE = 9.0
