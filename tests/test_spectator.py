"""The spectator tap in a real headless render loop: one eye or a free camera, read back
asynchronously only while a consumer wants frames, at the consumer's rate."""
from __future__ import annotations

import numpy as np

from xr_runtime.spectator.tap import FreeCamera, RateGate, SpectatorTap


class Keep:
    """A consumer that wants a frame whenever `rate` allows and keeps every one it is given."""

    def __init__(self, max_fps: float = 0, active: bool = True):
        self.gate, self.frames, self.active = RateGate(max_fps), [], active

    def wants_frame(self, now_ns):
        if not self.active or not self.gate.ready(now_ns):
            return False
        self.gate.taken(now_ns)
        return True

    def offer(self, frame):
        self.frames.append(frame)


def _run(tap, frames=20, stereo=True, fps=60.0):
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.render_node import RenderNode
    from xr_runtime.scene.scene_file import Scene

    scene = Scene.from_dict({"version": 1, "avatars": [{"package": "a", "stream": "s", "position": [0, 1.6, -0.5]}]})
    source = StaticAvatarStateSource({"s": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    backend = HeadlessBackend(HeadlessConfig(width=160, height=120, stereo=stereo, fps=fps, paced=True, read_back=True))
    node = RenderNode(scene, [AvatarAssets(dev_head_mesh(), dev_texture(64))], source, spectator=tap)
    stats = node.run(backend, max_frames=frames)
    return stats, backend


def test_the_chosen_eye_is_read_back_at_the_consumers_rate_and_matches_what_was_drawn(egl_available):
    keep = Keep(max_fps=30)
    stats, backend = _run(SpectatorTap([keep], eye=1), frames=30)
    expected = min(stats["frames"], stats["seconds"] * 30)       # the loop may run below 60 Hz on a busy host
    assert expected * 0.7 - 2 <= len(keep.frames) <= expected * 1.1 + 2, (len(keep.frames), stats["seconds"])
    assert stats["spectator"]["grabbed"] == len(keep.frames) and stats["spectator"]["view"] == "right"
    # A still scene draws the same picture every frame: any grabbed frame is the right eye's.
    right_eye = backend.last_image[:, 160:, :3].astype(int)      # stereo: left | right
    left_eye = backend.last_image[:, :160, :3].astype(int)
    grabbed = keep.frames[-1].top_down()[..., :3].astype(int)
    assert np.abs(grabbed - right_eye).mean() < 0.5
    assert np.abs(grabbed - left_eye).mean() > 0.5                # and not the left one


def test_nobody_watching_costs_no_readback(egl_available):
    keep = Keep(active=False)
    stats, _ = _run(SpectatorTap([keep]), frames=10, stereo=False)
    assert stats["spectator"]["grabbed"] == 0 and keep.frames == []


def test_a_free_camera_sees_the_avatar_from_its_own_place(egl_available):
    keep = Keep(max_fps=0)
    camera = FreeCamera((0.45, 1.7, 0.1), (0.0, 1.6, -0.5), width=200, height=150)
    stats, backend = _run(SpectatorTap([keep], free_camera=camera), frames=6, stereo=False)
    assert len(keep.frames) == 6 and stats["spectator"]["view"] == "free camera"
    image = keep.frames[-1].top_down()[..., :3].astype(int)
    assert image.shape == (150, 200, 3)
    eye = backend.last_image[..., :3].astype(int)
    # The dev head's texture has saturated quadrant colours the room does not: it is in view.
    saturation = image.max(axis=2) - image.min(axis=2)
    assert (saturation > 120).sum() > 100, (saturation > 120).sum()
    assert image.shape != eye.shape or np.abs(image - eye).mean() > 5
