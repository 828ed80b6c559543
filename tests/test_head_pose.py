"""The driver's head motion → the avatar's head: reference pose, head-frame rotation with the right
sign, smoothing with the real frame interval, clamping, and the pivot in the model matrix."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from test_features import _track

from calibration.head_pose import HeadMotionConfig, HeadMotionTracker, OneEuroFilter
from geometry import transforms
from geometry.rotations import quaternion_to_rotation, rotation_to_quaternion, rotation_vector
from inference.features.mp478 import Mp478Extractor, head_pose
from xr_runtime.avatars.state import AvatarPose
from xr_runtime.scene.placement import head_model_matrix

NOSE_TIP = 1


@pytest.fixture(scope="module")
def man_frame() -> np.ndarray:
    return _track("single_face.mp4", max_frames=1)[0]


def _turned(landmarks_px: np.ndarray, yaw_deg: float = 0.0, pitch_deg: float = 0.0, shift=(0.0, 0.0),
            zoom: float = 1.0) -> np.ndarray:
    """The same face turned about the camera's vertical (yaw) / horizontal (pitch) axis through its
    centre, moved in the image and scaled, as a camera would see it."""
    c = landmarks_px.mean(0)
    a, b = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rx = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    out = (landmarks_px - c) @ (ry @ rx).T * zoom + c
    out[:, :2] += shift
    return out.astype(np.float32)


def _wire(landmarks_px: np.ndarray):
    ex = Mp478Extractor()
    _, pose = ex.canonical(landmarks_px)
    return head_pose(pose)


def _feed(tracker, frames, t0_ns=0, dt_ns=33_000_000):
    for i, lm in enumerate(frames):
        p = _wire(lm)
        tracker.update(p.rotation, p.translation, p.scale, t0_ns + i * dt_ns)
    return tracker.motion


def test_turning_to_ones_own_left_is_a_positive_turn_about_up(man_frame):
    # Which yaw sign moves his nose towards image right (his own left, as the camera sees him)?
    sign = 1.0 if _turned(man_frame, 20)[NOSE_TIP, 0] > man_frame[NOSE_TIP, 0] else -1.0
    tracker = HeadMotionTracker(HeadMotionConfig(reference_frames=10, rotation_beta=50.0))
    still = _feed(tracker, [man_frame] * 10)
    assert tracker.referenced and abs(2 * math.degrees(math.acos(min(1.0, still.rotation[0])))) < 1.0
    motion = _feed(tracker, [_turned(man_frame, sign * 25)] * 30, t0_ns=10 * 33_000_000)
    v = rotation_vector(np.array(motion.rotation))
    assert math.degrees(v[1]) == pytest.approx(25, abs=3)  # about +y (up), positive: towards his left
    assert abs(math.degrees(v[0])) < 4 and abs(math.degrees(v[2])) < 4


def test_nodding_down_is_about_the_ear_to_ear_axis(man_frame):
    # Chin towards the chest: the nose tip moves down in the image.
    sign = 1.0 if _turned(man_frame, 0, 15)[NOSE_TIP, 1] > man_frame[NOSE_TIP, 1] else -1.0
    tracker = HeadMotionTracker(HeadMotionConfig(reference_frames=5, rotation_beta=50.0))
    _feed(tracker, [man_frame] * 5)
    v = rotation_vector(np.array(_feed(tracker, [_turned(man_frame, 0, sign * 15)] * 30, t0_ns=5 * 33_000_000).rotation))
    # Canonical x points to his left; nodding down turns the face (+z) towards -y: positive about +x.
    assert math.degrees(v[0]) == pytest.approx(15, abs=3) and abs(math.degrees(v[1])) < 4


def test_moving_and_leaning_in_become_head_frame_translation(man_frame):
    tracker = HeadMotionTracker(HeadMotionConfig(reference_frames=5, translation_beta=50.0))
    _feed(tracker, [man_frame] * 5)
    iod_px = _wire(man_frame).scale
    m = _feed(tracker, [_turned(man_frame, shift=(iod_px, 0.0))] * 30, t0_ns=5 * 33_000_000)
    # One interocular distance towards image right = towards his left = +x of his head frame.
    assert m.translation[0] == pytest.approx(1.0, abs=0.1) and abs(m.translation[1]) < 0.1
    lean = HeadMotionTracker(HeadMotionConfig(reference_frames=5, translation_beta=50.0))
    _feed(lean, [man_frame] * 5)
    closer = _feed(lean, [_turned(man_frame, zoom=1.1)] * 30, t0_ns=5 * 33_000_000)
    assert closer.translation[2] > 0.5  # towards the camera: out of his face, +z


def test_jitter_at_rest_is_smoothed_but_a_turn_gets_through(man_frame):
    rng = np.random.default_rng(0)
    cfg = HeadMotionConfig(reference_frames=10, translation=False)
    tracker = HeadMotionTracker(cfg)
    _feed(tracker, [man_frame] * 10)
    raw, smooth = [], []
    for i in range(60):
        q = np.array(_wire(man_frame).rotation)
        noise = rotation_to_quaternion(quaternion_to_rotation(np.r_[1.0, rng.normal(0, 0.01, 3)]))
        r = quaternion_to_rotation(q) @ quaternion_to_rotation(noise)
        m = tracker.update(rotation_to_quaternion(r), (0, 0, 0), 100.0, (10 + i) * 33_000_000)
        raw.append(np.linalg.norm(rotation_vector(np.array(noise))))
        smooth.append(np.linalg.norm(rotation_vector(np.array(m.rotation))))
    assert np.mean(smooth[10:]) < 0.5 * np.mean(raw[10:])
    # A fast turn of 30° reaches most of the way within 5 frames (≈ 170 ms at 30 fps).
    turned = _wire(_turned(man_frame, 30))
    for i in range(5):
        m = tracker.update(turned.rotation, turned.translation, turned.scale, (70 + i) * 33_000_000)
    assert math.degrees(np.linalg.norm(rotation_vector(np.array(m.rotation)))) > 20


def test_one_euro_uses_the_real_time_step():
    """The same step sampled at 30 Hz and at 120 Hz settles in the same *time*, not frame count."""
    def settle(rate):
        f = OneEuroFilter(1.0, 0.0)
        f(np.zeros(1), 0.0)
        t, k = 0.0, 0
        while True:
            k += 1
            t = k / rate
            if f(np.ones(1), t)[0] > 0.9:
                return t

    assert settle(30) == pytest.approx(settle(120), rel=0.25)


def test_flips_are_clamped_and_garbage_is_rejected(man_frame):
    tracker = HeadMotionTracker(HeadMotionConfig(reference_frames=3, max_angle_deg=60, rotation_beta=1e3))
    _feed(tracker, [man_frame] * 3)
    flipped = _wire(_turned(man_frame, 170))
    for i in range(20):
        m = tracker.update(flipped.rotation, flipped.translation, flipped.scale, (3 + i) * 33_000_000)
    assert math.degrees(np.linalg.norm(rotation_vector(np.array(m.rotation)))) == pytest.approx(60, abs=1)
    before = tracker.motion
    for bad in ((float("nan"), 0, 0, 0), (0, 0, 0, 0)):
        assert tracker.update(bad, (0, 0, 0), 100.0, 10**9) == before
    assert tracker.update(flipped.rotation, (0, 0, float("inf")), 100.0, 10**9) == before
    assert tracker.update(flipped.rotation, (0, 0, 0), -1.0, 10**9) == before
    assert tracker.rejected == 4


def test_a_stream_that_returns_after_a_long_gap_gets_a_new_reference(man_frame):
    tracker = HeadMotionTracker(HeadMotionConfig(reference_frames=3, rotation_beta=1e3))
    _feed(tracker, [man_frame] * 3)
    turned = [_turned(man_frame, 20)] * 3
    _feed(tracker, turned, t0_ns=3 * 33_000_000)
    assert np.linalg.norm(rotation_vector(np.array(tracker.motion.rotation))) > math.radians(15)
    # 10 s later the driver sits differently: that is their new reference, not a 20° turn.
    _feed(tracker, turned * 2, t0_ns=10 * 10**9)
    assert np.linalg.norm(rotation_vector(np.array(tracker.motion.rotation))) < math.radians(1)


def test_head_turns_about_its_pivot():
    placement = transforms.pose_matrix((0.0, 1.6, -1.0), (0, 0, 0, 1))
    pivot = (0.0, -0.08, -0.09)
    yaw = (math.cos(math.radians(15)), 0.0, math.sin(math.radians(15)), 0.0)
    m = head_model_matrix(placement, 1.0, AvatarPose(yaw, (0.0, 0.0, 0.0), 1.0, pivot))
    fixed = m @ np.r_[pivot, 1.0]
    assert np.allclose(fixed[:3], placement[:3, :3] @ np.array(pivot) + placement[:3, 3], atol=1e-6)
    nose = m @ np.array([0.0, -0.04, 0.05, 1.0])
    assert nose[0] > 0.01  # the face turned towards +x
    unturned = head_model_matrix(placement, 1.0, AvatarPose())
    assert np.allclose(unturned, placement @ transforms.scaling(1.0))


def test_the_engine_source_turns_the_avatar_with_the_driver(man_frame):
    """Feature frames carrying the tracker's pose through the real streaming engine and the render
    node's state source: the avatar's head pose follows the driver's turn about its neck."""
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.reference_avatar import reference_avatar
    from streaming.protocol import FeatureFrame, FeatureKind
    from streaming.receiver import ReceivedFrame
    from xr_runtime.avatars.engine_source import NECK_PIVOT, engine_state_source

    sign = 1.0 if _turned(man_frame, 20)[NOSE_TIP, 0] > man_frame[NOSE_TIP, 0] else -1.0
    still, turned = _wire(man_frame), _wire(_turned(man_frame, sign * 20))

    class Feed:  # the receiver's interface the engine reads (FrameSource): one new frame per step
        seq = 0

        def snapshot(self):
            return {}

        def window_received(self, sid, n):
            Feed.seq += 1
            t = time.monotonic_ns()
            pose = still if Feed.seq <= 150 else turned  # the engine may read several per step
            return [ReceivedFrame(FeatureFrame("man", Feed.seq, FeatureKind.MP478, np.zeros((478, 3), np.float32),
                                               t, t, pose=pose), t)]

    engine = StreamingEngine({"man": reference_avatar(32, seed=0)}, EngineConfig(device="cpu", threads=1))
    source = engine_state_source(engine, Feed(), period_s=1 / 200).start()
    try:
        deadline = time.monotonic() + 20
        while Feed.seq < 400 and time.monotonic() < deadline:
            time.sleep(0.02)
        state = source.latest("man", time.monotonic_ns())
    finally:
        source.stop()
    assert source.errors == 0 and state is not None
    v = rotation_vector(np.array(state.pose.rotation))
    assert math.degrees(v[1]) == pytest.approx(20, abs=4), np.degrees(v)
    assert state.pose.pivot == pytest.approx(tuple(c * 0.063 for c in NECK_PIVOT))
