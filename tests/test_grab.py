"""Grabbing avatars with controllers: pure matrix logic, no runtime needed."""
from __future__ import annotations

import math

import numpy as np
import pytest

from geometry import transforms
from xr_runtime.scene.grab import GrabConfig, GrabController
from xr_runtime.scene.hand import HandState


def hand(position, squeeze, yaw_deg=0.0, roll_deg=0.0) -> HandState:
    yaw, roll = math.radians(yaw_deg) / 2, math.radians(roll_deg) / 2
    q_yaw = np.array([0, math.sin(yaw), 0, math.cos(yaw)])
    q_roll = np.array([0, 0, math.sin(roll), math.cos(roll)])
    # Hamilton product q_yaw * q_roll in xyzw
    x1, y1, z1, w1 = q_yaw
    x2, y2, z2, w2 = q_roll
    q = (w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2, w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2,
         w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2, w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2)
    return HandState(True, tuple(position), q, squeeze)


@pytest.fixture
def scene():
    return {"a": transforms.translation(0.0, 1.5, -1.0), "b": transforms.translation(1.0, 1.5, -1.0)}


def test_squeeze_near_avatar_moves_it_with_the_hand(scene):
    grab = GrabController()
    assert grab.update({"right": hand((0.1, 1.5, -0.9), 0.0)}, scene) == {}
    moved = grab.update({"right": hand((0.1, 1.5, -0.9), 1.0)}, scene)
    assert grab.held() == {"right": "a"}
    assert np.allclose(moved["a"], scene["a"], atol=1e-6)   # grabbing alone moves nothing
    scene.update(moved)
    moved = grab.update({"right": hand((0.4, 1.7, -0.5), 0.9)}, scene)
    assert np.allclose(moved["a"][:3, 3], (0.3, 1.7, -0.6), atol=1e-6)  # keeps its offset


def test_turning_the_hand_turns_the_avatar_about_the_grip(scene):
    grab = GrabController()
    grab.update({"left": hand((0.0, 1.5, -0.8), 0.0)}, scene)
    grab.update({"left": hand((0.0, 1.5, -0.8), 1.0)}, scene)
    moved = grab.update({"left": hand((0.0, 1.5, -0.8), 1.0, yaw_deg=90)}, scene)["a"]
    # The avatar sat 0.2 m in front (-Z) of the grip; a 90° turn about +Y puts it at -X.
    assert np.allclose(moved[:3, 3], (-0.2, 1.5, -0.8), atol=1e-5)
    assert np.allclose(moved[:3, :3], transforms.rotation_y(math.radians(90))[:3, :3], atol=1e-5)


def test_upright_ignores_roll_unless_disabled(scene):
    for upright in (True, False):
        grab = GrabController(GrabConfig(upright=upright))
        grab.update({"left": hand((0.0, 1.5, -1.0), 0.0)}, scene)
        grab.update({"left": hand((0.0, 1.5, -1.0), 1.0)}, scene)
        moved = grab.update({"left": hand((0.0, 1.5, -1.0), 1.0, roll_deg=40)}, scene)["a"]
        up = moved[:3, :3] @ np.array([0, 1, 0])
        assert (np.allclose(up, (0, 1, 0), atol=1e-6)) == upright


def test_release_drops_and_hysteresis_holds(scene):
    grab = GrabController()
    grab.update({"right": hand((0.0, 1.5, -1.0), 0.0)}, scene)
    grab.update({"right": hand((0.0, 1.5, -1.0), 0.8)}, scene)
    assert grab.update({"right": hand((0.0, 1.6, -1.0), 0.5)}, scene)   # 0.5 > release: still held
    assert grab.update({"right": hand((0.0, 1.7, -1.0), 0.3)}, scene) == {}
    assert grab.held() == {}


def test_no_grab_out_of_reach_or_without_a_press_edge(scene):
    grab = GrabController()
    grab.update({"right": hand((0.0, 0.5, 0.0), 0.0)}, scene)
    assert grab.update({"right": hand((0.0, 0.5, 0.0), 1.0)}, scene) == {}      # too far
    assert grab.update({"right": hand((0.0, 1.5, -1.0), 1.0)}, scene) == {}    # swept in squeezed
    assert grab.held() == {}


def test_two_hands_take_two_avatars_not_one(scene):
    grab = GrabController(GrabConfig(reach=2.0))
    idle = {"left": hand((0.0, 1.5, -1.0), 0.0), "right": hand((0.1, 1.5, -1.0), 0.0)}
    grab.update(idle, scene)
    grab.update({"left": hand((0.0, 1.5, -1.0), 1.0), "right": hand((0.1, 1.5, -1.0), 1.0)}, scene)
    assert sorted(grab.held().values()) == ["a", "b"]


def test_losing_tracking_drops_the_avatar(scene):
    grab = GrabController()
    grab.update({"right": hand((0.0, 1.5, -1.0), 0.0)}, scene)
    grab.update({"right": hand((0.0, 1.5, -1.0), 1.0)}, scene)
    assert grab.update({"right": HandState(active=False)}, scene) == {}
    assert grab.held() == {}
