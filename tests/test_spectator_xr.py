"""The spectator tap on OpenXR (Monado): the eye the page and the virtual camera show is read back
from the acquired swapchain image, asynchronously, before the image goes back to the runtime —
and it is exactly what was drawn into that eye."""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.xr

if os.environ.get("HEADCAST_MONADO_ENV") != "1" and not os.environ.get("XR_RUNTIME_JSON"):
    pytest.skip("needs an OpenXR runtime: run under scripts/monado_env.sh run", allow_module_level=True)

from pathlib import Path  # noqa: E402

from _xr_placement import place_before_head  # noqa: E402
from xr_runtime.avatars.assets import AvatarAssets  # noqa: E402
from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture  # noqa: E402
from xr_runtime.avatars.sampler import SamplerConfig  # noqa: E402
from xr_runtime.backends.openxr import OpenXRBackend  # noqa: E402
from xr_runtime.render_node import RenderNode, RenderNodeConfig  # noqa: E402
from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform  # noqa: E402
from xr_runtime.spectator.tap import SpectatorTap  # noqa: E402


class Keep:
    def __init__(self):
        self.frames = []

    def wants_frame(self, now_ns):
        return True

    def offer(self, frame):
        self.frames.append(frame)


class RightEyeNode(RenderNode):
    """Puts the avatar in front of the simulated head and keeps each right eye as drawn (a plain,
    synchronous read of the swapchain image: the reference for the tap's copy)."""

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        self.placed = False
        self.right_eye: dict[int, np.ndarray] = {}

    def draw_eye(self, frame, eye):
        if not self.placed:
            place_before_head(self, frame, eye, ((0.0, -0.5),))
            self.placed = True
        super().draw_eye(frame, eye)
        if eye.index == 1:
            self.right_eye[frame.index] = eye.target.read_rgba()


def test_the_tap_reads_the_right_eye_from_the_swapchain_as_drawn():
    scene = Scene([AvatarSlot(Path("a"), "alice", Transform((0, 1.6, -0.6)))])
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    keep = Keep()
    node = RightEyeNode(scene, [AvatarAssets(dev_head_mesh(), dev_texture(64))], source,
                        RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0)), spectator=SpectatorTap([keep], eye=1))
    stats = node.run(OpenXRBackend(), max_frames=16, seconds=30)
    assert stats["backend"] == "openxr" and stats["spectator"]["grabbed"] >= 12, stats["spectator"]
    assert len(keep.frames) == stats["spectator"]["delivered"] >= 12
    compared = 0
    for frame in keep.frames[2:]:
        drawn = node.right_eye.get(frame.index)
        if drawn is None:
            continue
        image = frame.top_down()
        assert image.shape == drawn.shape
        assert np.abs(image.astype(int) - drawn.astype(int)).max() <= 1, frame.index
        compared += 1
    assert compared >= 10
    saturation = keep.frames[-1].top_down()[..., :3].astype(int)
    assert ((saturation.max(axis=2) - saturation.min(axis=2)) > 120).sum() > 50   # the avatar's colours are in it
