"""`render --virtual-camera`: what can run without a loopback device.

CI has no v4l2loopback device, so the frames go through pyvirtualcam's own `Camera` front end
(shape checks, `sleep_until_next_frame` pacing) into a backend registered with its
`register_backend` that keeps what it is sent. Opening a real v4l2loopback / OBS device has not
run here (docs/ARCHITECTURE.md says so too).
"""
from __future__ import annotations

import glob
import json
import subprocess
import sys
import time

import numpy as np
import pytest

pyvirtualcam = pytest.importorskip("pyvirtualcam")

from xr_runtime.spectator.tap import SpectatorFrame  # noqa: E402
from xr_runtime.spectator.virtual_camera import (  # noqa: E402
    VirtualCameraConfig, VirtualCameraFeed, VirtualCameraUnavailable, camera_frame)

HEADCAST = [sys.executable, "-m", "tools.cli"]


class RecordingBackend:
    """A pyvirtualcam backend (its documented interface) that keeps every frame and when it came."""

    instances: list = []

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if device not in (None, "recording"):
            raise RuntimeError(f"no such device {device}")
        self.width, self.height, self.fps, self.fourcc = width, height, fps, fourcc
        self.frames, self.times = [], []
        RecordingBackend.instances.append(self)

    def send(self, frame):
        self.frames.append(frame.reshape(self.height, self.width, 3).copy())   # sent flat, in RGB
        self.times.append(time.monotonic())

    def close(self):
        pass

    def device(self):
        return "recording"

    def native_fourcc(self):
        return None


pyvirtualcam.register_backend("headcast-recording", RecordingBackend)


def _spectator(width=200, height=100) -> SpectatorFrame:
    top_down = np.zeros((height, width, 4), np.uint8)
    top_down[: height // 2, :, 2] = 255          # blue on top
    top_down[height // 2:, :, 0] = 255           # red below
    now = time.monotonic_ns()
    return SpectatorFrame(np.ascontiguousarray(top_down[::-1]), 0, now, now, now)   # GL order: bottom-up


def test_frames_are_flipped_letterboxed_rgb_of_the_cameras_size():
    rgb = camera_frame(_spectator(), 320, 240)
    assert rgb.shape == (240, 320, 3) and rgb.dtype == np.uint8
    # 200x100 into 320x240: scaled to 320x160, black bars of 40 rows above and below.
    assert rgb[:38].max() == 0 and rgb[-38:].max() == 0
    assert tuple(rgb[60, 160]) == (0, 0, 255) and tuple(rgb[180, 160]) == (255, 0, 0)   # blue on top


def test_the_camera_thread_paces_itself_and_repeats_the_last_frame_when_none_is_new():
    RecordingBackend.instances.clear()
    feed = VirtualCameraFeed(VirtualCameraConfig(width=320, height=240, fps=30, backend="headcast-recording"))
    try:
        offers = 0
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:                   # a 120 Hz "render loop" for the first second
            if time.monotonic() < t_end - 0.5 and feed.wants_frame(time.monotonic_ns()):
                t = time.perf_counter()
                feed.offer(_spectator())
                assert time.perf_counter() - t < 0.005
                offers += 1
            time.sleep(1 / 120)
    finally:
        feed.close()
    backend = RecordingBackend.instances[-1]
    assert backend.fourcc == pyvirtualcam.util.encode_fourcc(pyvirtualcam.PixelFormat.RGB.value)
    assert all(f.shape == (240, 320, 3) for f in backend.frames)
    assert 20 <= offers <= 36                              # asked for at the camera's rate, not the loop's
    intervals = np.diff(backend.times)
    assert np.median(intervals) == pytest.approx(1 / 30, rel=0.2), np.median(intervals)
    assert 38 <= len(backend.frames) <= 50                 # ~30 a second for 1.5 s
    s = feed.summary()
    assert s["repeated"] >= 10                             # the last half second had nothing new
    assert s["fresh"] == offers
    assert tuple(backend.frames[-1][170, 160]) == (255, 0, 0)


def test_the_render_loop_feeds_the_camera_through_the_spectator_tap(egl_available):
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.render_node import RenderNode
    from xr_runtime.scene.scene_file import Scene
    from xr_runtime.spectator.tap import SpectatorTap

    RecordingBackend.instances.clear()
    feed = VirtualCameraFeed(VirtualCameraConfig(width=160, height=120, fps=30, backend="headcast-recording"))
    scene = Scene.from_dict({"version": 1, "avatars": [{"package": "a", "stream": "s", "position": [0, 1.6, -0.6]}]})
    source = StaticAvatarStateSource({"s": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    backend = HeadlessBackend(HeadlessConfig(width=160, height=120, fps=60, paced=True, read_back=True))
    node = RenderNode(scene, [AvatarAssets(dev_head_mesh(), dev_texture(64))], source, spectator=SpectatorTap([feed]))
    try:
        stats = node.run(backend, max_frames=60)
        time.sleep(0.1)
    finally:
        feed.close()
    frames = RecordingBackend.instances[-1].frames
    assert 20 <= feed.fresh <= 36 and stats["spectator"]["grabbed"] == feed.fresh   # ~30 of 60 frames taken
    last = frames[-1].astype(int)
    rendered = backend.last_image[..., :3].astype(int)            # the same eye as the backend read it
    assert np.abs(last - rendered).mean() < 3, np.abs(last - rendered).mean()
    assert last[5, 80, 2] > last[5, 80, 0]                        # the sky on top: right way up


@pytest.mark.skipif(bool(glob.glob("/dev/video*")), reason="this machine has video devices")
def test_without_a_loopback_device_render_says_what_to_do(tmp_path):
    scene = tmp_path / "scene.json"
    scene.write_text(json.dumps({"version": 1, "avatars": [{"package": "a", "stream": "s"}]}))
    r = subprocess.run(HEADCAST + ["render", "--scene", str(scene), "--dev-avatars", "--bind", "tcp://127.0.0.1:*",
                                   "--backend", "headless", "--frames", "2", "--virtual-camera"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert "modprobe v4l2loopback" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(VirtualCameraUnavailable, match="/dev/video42"):
        VirtualCameraFeed(VirtualCameraConfig(device="/dev/video42"))
