"""What the render loop reads about one driven avatar each frame, and the source it reads it from.

The render loop never waits on the network or on inference. A source owns a worker thread
(receiver → animation network → decoder) that publishes `AvatarFrameState`s; the loop *polls*
`source.latest(stream_id, t_display_ns)` once per frame and gets the newest state or None. What
the loop does with consecutive states (interpolation, fading) lives in `state_sampler`.

Everything a source returns is untrusted: `check_state` validates it so that a buggy or
malicious producer costs one counted, skipped state, never a crashed frame loop.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from core.errors import HeadcastError


@dataclass(frozen=True)
class AvatarPose:
    """Rigid head pose relative to the avatar's slot in the scene (metres, unit quaternion).

    The rotation turns the head about ``pivot`` (model coordinates, metres, before the slot's
    scale): a head nods and turns about the top of the neck, not about the bridge of its nose."""

    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # w, x, y, z
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0
    pivot: tuple[float, float, float] = (0.0, 0.0, 0.0)


IDENTITY_POSE = AvatarPose()


@dataclass(frozen=True)
class AvatarFrameState:
    """One decoded animation state of one stream.

    `texture`: (H, W, 4) uint8 RGBA (sRGB bytes), a numpy array or a CUDA tensor; None means "the
    texture did not change". `texture_serial` changes whenever the texture does, so the loop
    uploads each texture once, however many frames or eyes show it.
    `t_state_ns`: the instant the state depicts (capture time mapped to this host's monotonic
    clock); `t_ready_ns`: when the worker finished it. Interpolation uses `t_state_ns`.
    `presence` in [0, 1]: 1 = face tracked and stream live; 0 = face lost or stream gone.
    `cuda_stream`: raw CUDA stream handle the texture was produced on (GPU textures only).
    `trace`: stage timestamps of the captured frame behind this state (latency measurement).
    """

    texture: Any
    weights: np.ndarray
    pose: AvatarPose = IDENTITY_POSE
    presence: float = 1.0
    t_state_ns: int = 0
    t_ready_ns: int = 0
    texture_serial: int = 0
    cuda_stream: int | None = None
    trace: Any = None  # xr_runtime.latency.recorder.LatencyTrace of the newest captured frame in this state
    eyes: Any = None  # inference.engine.eye_state.EyeState of that frame (lids and gaze), or None


@runtime_checkable
class AvatarStateSource(Protocol):
    """Produces avatar states on its own thread; `latest` must return immediately."""

    def latest(self, stream_id: str, t_display_ns: int) -> AvatarFrameState | None: ...


class BadState(HeadcastError, ValueError):
    """A state that cannot be drawn; the message says why (counted by the render node)."""


def is_cuda_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and getattr(getattr(value, "device", None), "type", "") == "cuda"


def check_state(state: Any, blendshape_count: int) -> AvatarFrameState:
    """Return `state` if it can be drawn for an avatar with `blendshape_count` weights, else raise BadState."""
    if not isinstance(state, AvatarFrameState):
        raise BadState(f"expected AvatarFrameState, got {type(state).__name__}")
    tex = state.texture
    if tex is not None:
        if is_cuda_tensor(tex):
            if str(tex.dtype) != "torch.uint8" or tex.ndim != 3 or tex.shape[2] != 4:
                raise BadState(f"CUDA texture must be uint8 (H, W, 4), got {tuple(tex.shape)} {tex.dtype}")
        elif not isinstance(tex, np.ndarray) or tex.dtype != np.uint8 or tex.ndim != 3 or tex.shape[2] != 4:
            raise BadState(f"texture must be uint8 (H, W, 4), got {getattr(tex, 'shape', type(tex).__name__)}")
        if min(tex.shape[:2]) < 1 or max(tex.shape[:2]) > 8192:
            raise BadState(f"texture size {tuple(tex.shape[:2])} out of range")
    weights = state.weights
    if not isinstance(weights, np.ndarray) or weights.shape != (blendshape_count,):
        raise BadState(f"weights must be ({blendshape_count},), got {getattr(weights, 'shape', type(weights).__name__)}")
    if not np.isfinite(weights).all():
        raise BadState("weights contain NaN or inf")
    p = state.pose
    if not isinstance(p, AvatarPose):
        raise BadState(f"pose must be AvatarPose, got {type(p).__name__}")
    values = (*p.rotation, *p.translation, *p.pivot, p.scale, state.presence)
    if (len(p.rotation) != 4 or len(p.translation) != 3 or len(p.pivot) != 3
            or not all(math.isfinite(float(v)) for v in values)):
        raise BadState("pose or presence not finite")
    if abs(math.sqrt(sum(float(v) ** 2 for v in p.rotation)) - 1.0) > 1e-2:
        raise BadState("rotation is not a unit quaternion")
    if not 0.0 < p.scale < 100.0 or not 0.0 <= state.presence <= 1.0:
        raise BadState(f"scale {p.scale} or presence {state.presence} out of range")
    if max(abs(float(v)) for v in (*p.translation, *p.pivot)) > 10.0:
        raise BadState("pose translation or pivot beyond 10 m of the slot")
    return state
