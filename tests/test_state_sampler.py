"""Sampling avatar states for a display time: interpolation, bounded extrapolation, fading, idle."""
from __future__ import annotations

import math

import numpy as np
import pytest

from xr_runtime.avatars.sampler import AvatarSampler, SamplerConfig, idle_pose
from xr_runtime.avatars.state import AvatarFrameState, AvatarPose, BadState, check_state

MS = 1_000_000
NEUTRAL_TEX = np.zeros((4, 4, 4), np.uint8)
LIVE_TEX = np.full((4, 4, 4), 200, np.uint8)


def yaw_quat(deg: float):
    h = math.radians(deg) / 2
    return (math.cos(h), 0.0, math.sin(h), 0.0)


def state(t_ms: float, w: float, yaw: float = 0.0, presence: float = 1.0, serial: int = 1, tex=LIVE_TEX):
    return AvatarFrameState(tex, np.array([w], np.float32), AvatarPose(yaw_quat(yaw), (w, 0.0, 0.0)), presence,
                            t_state_ns=int(t_ms * MS), t_ready_ns=int(t_ms * MS), texture_serial=serial)


def sampler(**kw) -> AvatarSampler:
    cfg = SamplerConfig(fade_s=0.0, **kw)
    return AvatarSampler(NEUTRAL_TEX, np.zeros(1, np.float32), cfg)


def test_interpolates_weights_and_pose_between_the_last_two_states():
    s = sampler()
    s.observe(state(0, 0.0, 0.0), 0)
    s.observe(state(40, 1.0, 20.0), 40 * MS)
    look = s.sample(10 * MS)
    assert look.weights[0] == pytest.approx(0.25)
    assert look.pose.translation[0] == pytest.approx(0.25)
    assert 2 * math.degrees(math.asin(look.pose.rotation[2])) == pytest.approx(5.0, abs=1e-3)  # slerp


def test_extrapolation_is_bounded_in_time_and_in_intervals():
    s = sampler(max_extrapolation_ns=25 * MS, max_alpha=1.5)
    s.observe(state(0, 0.0), 0)
    s.observe(state(40, 1.0), 40 * MS)
    assert s.sample(50 * MS).weights[0] == pytest.approx(1.25)    # 10 ms ahead: linear
    assert s.sample(500 * MS).weights[0] == pytest.approx(1.5)   # capped at 1.5 intervals... and 25 ms
    s2 = sampler(max_extrapolation_ns=10 * MS, max_alpha=3.0)
    s2.observe(state(0, 0.0), 0)
    s2.observe(state(40, 1.0), 40 * MS)
    assert s2.sample(500 * MS).weights[0] == pytest.approx(1.25)  # capped at 10 ms past the newest


def test_a_restarted_stream_is_not_interpolated_across():
    s = sampler()
    s.observe(state(1000, 1.0), 0)
    s.observe(state(1040, 0.0), 0)
    s.observe(state(5, 0.5), 0)  # timestamps went back: a new stream
    assert s.sample(10 * MS).weights[0] == pytest.approx(0.5)


def test_fades_to_idle_without_new_states_and_the_idle_head_keeps_moving():
    s = AvatarSampler(NEUTRAL_TEX, np.zeros(1, np.float32), SamplerConfig(fade_s=0.2, lost_after_ns=100 * MS))
    looks = []
    for t in range(0, 1000, 50):
        if t <= 300:                                              # states arrive until 0.3 s
            s.observe(state(t, 1.0), t * MS)
        looks.append(s.sample(t * MS))
    assert looks[4].fade == pytest.approx(1.0)                    # faded in within 0.2 s
    assert looks[-1].fade == 0.0 and looks[-1].weights[0] == 0.0  # no state for > 100 ms: idle
    assert looks[-1].texture is NEUTRAL_TEX and looks[-1].texture_key == ("neutral",)
    idle = [s.sample(t * MS).pose.rotation for t in (2000, 2500, 3000)]
    assert len({tuple(np.round(q, 6)) for q in idle}) == 3        # never frozen
    assert all(abs(2 * math.degrees(math.asin(q[2]))) < 5 for q in idle)  # but calm


def test_half_faded_texture_is_a_blend_rebuilt_only_at_new_levels():
    s = AvatarSampler(NEUTRAL_TEX, np.zeros(1, np.float32), SamplerConfig(fade_s=1.0))
    s.observe(state(0, 1.0), 0)
    s.sample(0)
    half = s.sample(500 * MS)
    assert half.fade == pytest.approx(0.5)
    assert int(half.texture[0, 0, 0]) == 100 and half.texture_key[0] == "blend"
    again = s.sample(500 * MS + 1000)
    assert again.texture is half.texture                          # same level: cached, no re-upload


def test_idle_pose_is_a_unit_quaternion():
    for t in range(0, 10_000, 700):
        q = idle_pose(t * MS).rotation
        assert np.linalg.norm(q) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [
    "a string",
    AvatarFrameState(LIVE_TEX, np.zeros(2, np.float32)),
    AvatarFrameState(LIVE_TEX, np.array([np.inf], np.float32)),
    AvatarFrameState(LIVE_TEX[..., :3], np.zeros(1, np.float32)),
    AvatarFrameState(LIVE_TEX, np.zeros(1, np.float32), AvatarPose(scale=0.0)),
    AvatarFrameState(LIVE_TEX, np.zeros(1, np.float32), AvatarPose(translation=(math.nan, 0, 0))),
    AvatarFrameState(LIVE_TEX, np.zeros(1, np.float32), presence=-0.1),
    AvatarFrameState(LIVE_TEX, [0.0]),
])
def test_check_state_refuses_what_cannot_be_drawn(bad):
    with pytest.raises(BadState):
        check_state(bad, 1)
