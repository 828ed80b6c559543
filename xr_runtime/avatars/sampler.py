"""From the states a source published to what one avatar shows at one predicted display time.

Timing policy (per avatar, no threads, pure numpy):

* The sampler keeps the last two *distinct* states (by `t_state_ns`). For a display time between
  them it interpolates; past the newest it extrapolates linearly, but at most
  `max_extrapolation_ns` beyond the newest state and at most `max_alpha - 1` state intervals:
  capture → display latency is 50–150 ms, and extrapolating blendshape weights that far would
  amplify tracking noise into overshoot. Rotation uses slerp (extrapolated slerp for alpha > 1),
  translation, scale and weights are linear. Textures are never interpolated: the newest wins.
  With one state, or equal timestamps, the newest state is shown as is.
* Presence fades linearly over `fade_s` (display-time based, so frame rate does not matter)
  towards the source's presence, or towards 0 when the source returned nothing new for
  `lost_after_ns`. The shown look is `fade·live + (1 − fade)·idle`: weights blend towards the
  neutral weights, the texture towards the neutral texture, the pose towards a slow breathing
  sway, so a faded avatar is never frozen; when presence returns it blends back.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from geometry.rotations import slerp
from xr_runtime.avatars.state import AvatarFrameState, AvatarPose, is_cuda_tensor


@dataclass(frozen=True)
class SamplerConfig:
    max_extrapolation_ns: int = 25_000_000
    max_alpha: float = 1.5
    fade_s: float = 0.4
    lost_after_ns: int = 1_000_000_000
    texture_blend_steps: int = 32     # fade levels at which the blended texture is rebuilt


def blend_pose(a: AvatarPose, b: AvatarPose, alpha: float) -> AvatarPose:
    """a at alpha 0, b at alpha 1; alpha beyond 1 extrapolates."""
    q = slerp(a.rotation, b.rotation, alpha)
    t = np.asarray(a.translation) + alpha * (np.asarray(b.translation) - np.asarray(a.translation))
    p = np.asarray(a.pivot) + alpha * (np.asarray(b.pivot) - np.asarray(a.pivot))
    return AvatarPose(tuple(float(v) for v in q), tuple(float(v) for v in t), a.scale + alpha * (b.scale - a.scale),
                    tuple(float(v) for v in p))


def idle_pose(t_ns: int) -> AvatarPose:
    """A slow, small head sway (a few degrees, a few millimetres): alive, never distracting."""
    t = t_ns / 1e9
    yaw = math.radians(4.0) * math.sin(2 * math.pi * t / 7.0)
    pitch = math.radians(2.0) * math.sin(2 * math.pi * t / 5.0)
    cy, sy, cp, sp = math.cos(yaw / 2), math.sin(yaw / 2), math.cos(pitch / 2), math.sin(pitch / 2)
    rotation = (cy * cp, cy * sp, sy * cp, -sy * sp)  # yaw about +Y after pitch about +X, wxyz
    return AvatarPose(rotation, (0.0, 0.003 * math.sin(2 * math.pi * t / 4.0), 0.0), 1.0)


def blend_textures(live, neutral: np.ndarray, fade: float):
    """fade·live + (1 − fade)·neutral, as uint8, on the device `live` lives on."""
    if is_cuda_tensor(live):
        import torch

        n = torch.from_numpy(neutral).to(live.device)
        return (live.float() * fade + n.float() * (1.0 - fade) + 0.5).clamp(0, 255).to(torch.uint8).contiguous()
    out = live.astype(np.float32) * fade + neutral.astype(np.float32) * (1.0 - fade) + 0.5
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass
class SampledLook:
    """What to draw for one avatar this frame."""

    weights: np.ndarray
    pose: AvatarPose
    texture: object            # numpy or CUDA tensor; None until any texture exists
    texture_key: tuple         # changes exactly when `texture` changes (upload once per key)
    fade: float
    cuda_stream: int | None = None
    eyes: object | None = None  # EyeState (lids, gaze) for the renderer's eyelid rig, or None


class AvatarSampler:
    """Per-avatar state history, presence fade and idle look."""

    def __init__(self, neutral_texture: np.ndarray, neutral_weights: np.ndarray,
                 config: SamplerConfig | None = None) -> None:
        self.config = config or SamplerConfig()
        self.neutral_texture = neutral_texture
        self.neutral_weights = np.asarray(neutral_weights, dtype=np.float32)
        self._previous: AvatarFrameState | None = None
        self._newest: AvatarFrameState | None = None
        self._texture = None                  # newest live texture seen
        self._texture_serial: int | None = None
        self._cuda_stream: int | None = None
        self._last_new_ns: int | None = None  # display time at which a new state last arrived
        self._last_display_ns: int | None = None
        self.fade = 0.0                       # starts idle, fades in with the first live state
        self._blend_cache: tuple | None = None
        self.states_seen = 0

    def observe(self, state: AvatarFrameState | None, t_display_ns: int) -> None:
        """Feed what the source returned this frame (already validated, or None)."""
        if state is None:
            return
        newest = self._newest
        if newest is None or state.t_state_ns != newest.t_state_ns or state.texture_serial != newest.texture_serial:
            if newest is not None and state.t_state_ns > newest.t_state_ns:
                self._previous = newest
            elif newest is not None and state.t_state_ns < newest.t_state_ns:
                self._previous = None  # the stream restarted: do not interpolate across it
            self._newest = state
            self._last_new_ns = t_display_ns
            self.states_seen += 1
        if state.texture is not None and state.texture_serial != self._texture_serial:
            self._texture, self._texture_serial, self._cuda_stream = state.texture, state.texture_serial, state.cuda_stream
        if self._last_new_ns is None:
            self._last_new_ns = t_display_ns

    def _target_presence(self, t_display_ns: int) -> float:
        if self._newest is None or self._last_new_ns is None:
            return 0.0
        if t_display_ns - self._last_new_ns > self.config.lost_after_ns:
            return 0.0
        return float(self._newest.presence)

    def _update_fade(self, t_display_ns: int) -> None:
        target = self._target_presence(t_display_ns)
        if self._last_display_ns is None:
            dt = 0.0
        else:
            dt = max(0.0, (t_display_ns - self._last_display_ns) / 1e9)
        self._last_display_ns = t_display_ns
        step = dt / self.config.fade_s if self.config.fade_s > 0 else 1.0
        if self.fade < target:
            self.fade = min(target, self.fade + step)
        else:
            self.fade = max(target, self.fade - step)

    def _live(self, t_display_ns: int) -> tuple[np.ndarray, AvatarPose]:
        newest, previous = self._newest, self._previous
        if previous is None:
            return newest.weights, newest.pose
        span = newest.t_state_ns - previous.t_state_ns
        if span <= 0:
            return newest.weights, newest.pose
        latest_allowed = newest.t_state_ns + self.config.max_extrapolation_ns
        t = min(t_display_ns, latest_allowed)
        alpha = min(max((t - previous.t_state_ns) / span, 0.0), self.config.max_alpha)
        weights = previous.weights + np.float32(alpha) * (newest.weights - previous.weights)
        return weights.astype(np.float32), blend_pose(previous.pose, newest.pose, alpha)

    def sample(self, t_display_ns: int) -> SampledLook:
        self._update_fade(t_display_ns)
        fade = self.fade
        idle = idle_pose(t_display_ns)
        if self._newest is None:
            weights, pose = self.neutral_weights, idle
        else:
            live_weights, live_pose = self._live(t_display_ns)
            weights = (fade * live_weights + (1.0 - fade) * self.neutral_weights).astype(np.float32)
            pose = blend_pose(idle, live_pose, fade)
        texture, key, stream = self._texture_for(fade)
        look = SampledLook(weights, pose, texture, key, fade, stream)
        # Lids and gaze: the newest state's, never interpolated (a blink lasts 2-3 camera frames:
        # blending two states would halve it), faded with presence like the weights.
        eyes = None if self._newest is None else self._newest.eyes
        look.eyes = None if eyes is None or fade <= 0.0 else eyes.faded(fade)
        return look

    def _texture_for(self, fade: float):
        live = self._texture
        if live is None or fade <= 0.0:
            return self.neutral_texture, ("neutral",), None
        if fade >= 1.0 or tuple(live.shape) != self.neutral_texture.shape:
            return live, ("live", self._texture_serial), self._cuda_stream
        # Rebuilding the blend costs a pass over the texture: only at quantised fade levels.
        level = max(1, round(fade * self.config.texture_blend_steps))
        key = ("blend", self._texture_serial, level)
        if self._blend_cache is None or self._blend_cache[0] != key:
            blended = blend_textures(live, self.neutral_texture, level / self.config.texture_blend_steps)
            self._blend_cache = (key, blended)
        return self._blend_cache[1], key, self._cuda_stream
