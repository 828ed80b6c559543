"""The render loop on a real headless EGL context (Mesa llvmpipe here), checked on its pixels."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xr_runtime.gl.egl_context")
cv2 = pytest.importorskip("cv2")

from geometry import transforms  # noqa: E402
from xr_runtime.avatars.dev_source import (  # noqa: E402
    QUADRANT_COLOURS,
    StaticAvatarStateSource,
    StaticStream,
    dev_head_mesh,
    dev_texture,
    solid_texture,
)
from xr_runtime.avatars.sampler import SamplerConfig  # noqa: E402
from xr_runtime.avatars.state import AvatarFrameState, AvatarPose  # noqa: E402
from xr_runtime.backends.base import head_eye_views  # noqa: E402
from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig  # noqa: E402
from xr_runtime.scene.hand import HandState  # noqa: E402
from xr_runtime.avatars.assets import AvatarAssets  # noqa: E402
from xr_runtime.render_node import RenderNode, RenderNodeConfig  # noqa: E402
from xr_runtime.scene.placement import head_model_matrix, rigid_matrix  # noqa: E402
from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform  # noqa: E402

W, H = 200, 150
NEUTRAL = (30, 30, 200)
LEFT_POS, RIGHT_POS = (-0.12, 1.6, -0.6), (0.12, 1.6, -0.6)


pytestmark = pytest.mark.usefixtures("egl_available")


def two_avatar_scene(tmp_path: Path) -> Scene:
    return Scene([AvatarSlot(tmp_path / "pkg_a", "alice", Transform(LEFT_POS)),
                  AvatarSlot(tmp_path / "pkg_b", "bob", Transform(RIGHT_POS))])


def assets(n: int = 2) -> list[AvatarAssets]:
    return [AvatarAssets(dev_head_mesh(), solid_texture(NEUTRAL)) for _ in range(n)]


def headless(**kw) -> HeadlessBackend:
    return HeadlessBackend(HeadlessConfig(width=W, height=H, **kw))


def uv_pixel(mesh, placement_pos, uv, eye_view, width=W, height=H, weights=None):
    """Where the mesh vertex nearest to `uv` lands in the image (idle sway is small)."""
    i = int(np.argmin(np.linalg.norm(mesh.uvs - np.asarray(uv), axis=1)))
    p = mesh.positions[i] if weights is None else mesh.deformed_positions(weights)[i]
    proj = transforms.projection_symmetric(60.0, width / height, 0.05, 100.0)
    model = head_model_matrix(rigid_matrix(placement_pos, (1, 0, 0, 0)), 1.0, AvatarPose())
    x, y = transforms.project_point(proj @ eye_view @ model, p, width, height)
    return int(round(x)), int(round(y))


def close(rgb, expected, tol=12) -> bool:
    return all(abs(int(a) - int(b)) <= tol for a, b in zip(rgb, expected))


def test_two_avatars_show_their_textures_where_they_stand_in_both_eyes(tmp_path):
    source = StaticAvatarStateSource({
        "alice": StaticStream(dev_texture(), np.zeros(2, np.float32)),
        "bob": StaticStream(solid_texture((240, 240, 240)), np.zeros(2, np.float32)),
    })
    backend = headless(stereo=True, read_back=True)
    node = RenderNode(two_avatar_scene(tmp_path), assets(), source,
                      RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0)))
    stats = node.run(backend, max_frames=4)
    image = backend.last_image
    assert image.shape == (H, 2 * W, 4)
    assert stats["frames"] == 4 and stats["views"] == 8
    mesh = dev_head_mesh()
    for eye, (view, _) in enumerate(head_eye_views((0, 1.6, 0), (1, 0, 0, 0), stereo=True)):
        half = image[:, eye * W:(eye + 1) * W]
        for uv, colour in zip(((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)), QUADRANT_COLOURS):
            x, y = uv_pixel(mesh, LEFT_POS, uv, view)
            assert close(half[y, x, :3], colour), (eye, uv, half[y, x, :3], colour)
        x, y = uv_pixel(mesh, RIGHT_POS, (0.5, 0.5), view)
        assert close(half[y, x, :3], (240, 240, 240)), half[y, x, :3]
        # Between the two heads: the wall behind, not an avatar colour.
        assert not close(half[int(y), W // 2, :3], (240, 240, 240))
    assert stats["counters"]["source_errors"] == 0 and stats["counters"]["bad_states"] == 0
    assert stats["uploads"]["host"] == 2  # each texture once, however many frames and eyes
    assert {"wait", "sample", "upload", "draw", "submit", "draw_eye0", "draw_eye1"} <= set(stats["stages_ms"])


def test_png_frames_and_mp4_are_written_and_readable(tmp_path):
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32)),
                                      "bob": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    scene = two_avatar_scene(tmp_path)
    RenderNode(scene, assets(), source).run(headless(out=tmp_path / "png"), max_frames=3)
    pngs = sorted((tmp_path / "png").glob("frame_*.png"))
    assert [p.name for p in pngs] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    first = cv2.imread(str(pngs[-1]))
    assert first.shape == (H, W, 3)
    assert first[5, W // 2, 0] > first[5, W // 2, 2]  # BGR: the sky at the top is blue

    video = tmp_path / "out.mp4"
    RenderNode(scene, assets(), source).run(headless(out=video, stereo=True), max_frames=6)
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    assert len(frames) == 6
    assert frames[0].shape == (H, 2 * W, 3)


class ScriptedPresence(StaticAvatarStateSource):
    """Presence 1 for the first frames, 0 in the middle, 1 again at the end (per call count)."""

    def __init__(self, live_until: int, back_at: int):
        super().__init__({"alice": StaticStream(solid_texture((230, 40, 40)), np.array([0.0, 0.0], np.float32)),
                          "bob": StaticStream(solid_texture((230, 40, 40)), np.array([0.0, 0.0], np.float32))})
        self.calls = 0
        self.live_until, self.back_at = live_until, back_at

    def latest(self, stream_id, t_display_ns):
        if stream_id == "alice":
            self.calls += 1
            self.set_presence("alice", 0.0 if self.live_until <= self.calls < self.back_at else 1.0)
        return super().latest(stream_id, t_display_ns)


def test_avatar_fades_to_idle_when_presence_drops_and_back_when_it_returns(tmp_path):
    source = ScriptedPresence(live_until=12, back_at=24)
    node = RenderNode(two_avatar_scene(tmp_path), assets(), source,
                      RenderNodeConfig(sampler=SamplerConfig(fade_s=0.1)))
    node.run(headless(out=tmp_path / "png", paced=True, fps=60), max_frames=36)
    view = head_eye_views((0, 1.6, 0), (1, 0, 0, 0), stereo=False)[0][0]
    x, y = uv_pixel(dev_head_mesh(), LEFT_POS, (0.5, 0.4), view)
    colours = [cv2.imread(str(p))[y, x, ::-1] for p in sorted((tmp_path / "png").glob("*.png"))]
    red, neutral = np.array((230, 40, 40)), np.array(NEUTRAL)

    def redness(c):  # 1 = live texture, 0 = neutral texture
        return float(np.dot(c - neutral, red - neutral) / np.dot(red - neutral, red - neutral))

    r = [redness(c.astype(float)) for c in colours]
    assert r[0] < 0.5                      # starts idle and fades in
    assert r[10] > 0.95                    # live (presence drops at the 12th poll = frame 11)
    assert all(0.05 < v < 0.95 for v in r[12:15]) and r[12] > r[13] > r[14]  # a fade, not a jump
    assert max(r[17:23]) < 0.05            # idle after the fade
    assert 0.05 < r[25] < 0.95             # fading back in
    assert r[35] > 0.9                     # live again
    # The other avatar stayed live throughout.
    x2, y2 = uv_pixel(dev_head_mesh(), RIGHT_POS, (0.5, 0.4), view)
    assert all(redness(cv2.imread(str(p))[y2, x2, ::-1].astype(float)) > 0.9
               for p in sorted((tmp_path / "png").glob("*.png"))[12:])


class HostileSource:
    """Raises, returns garbage of every kind, and now and then a good state."""

    def __init__(self):
        self.calls: dict[str, int] = {}
        good = AvatarFrameState(dev_texture(), np.zeros(2, np.float32), t_state_ns=1, texture_serial=1)
        self.replies = [
            RuntimeError("inference crashed"),
            "not a state",
            AvatarFrameState(dev_texture(), np.array([np.nan, 0], np.float32)),
            AvatarFrameState(np.zeros((4, 4, 3), np.uint8), np.zeros(2, np.float32)),
            AvatarFrameState(dev_texture(), np.zeros(5, np.float32)),
            AvatarFrameState(dev_texture(), np.zeros(2, np.float32), presence=5.0),
            AvatarFrameState(dev_texture(), np.zeros(2, np.float32), pose=AvatarPose(rotation=(0, 0, 0, 0))),
            AvatarFrameState(dev_texture().astype(np.float32), np.zeros(2, np.float32)),
            ZeroDivisionError(),
            good,
        ]

    def latest(self, stream_id, t_display_ns):
        n = self.calls.get(stream_id, 0)
        self.calls[stream_id] = n + 1
        reply = self.replies[n % len(self.replies)]
        if isinstance(reply, Exception):
            raise reply
        return reply


def test_a_source_that_raises_or_returns_garbage_never_stops_the_loop(tmp_path):
    backend = headless(read_back=True)
    node = RenderNode(two_avatar_scene(tmp_path), assets(), HostileSource(),
                      RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0)))
    stats = node.run(backend, max_frames=20)
    assert stats["frames"] == 20
    c = stats["counters"]
    assert c["source_errors"] == 8       # 2 of 10 replies raise; 2 avatars × 20 frames
    assert c["bad_states"] == 28         # 7 of 10 are unusable
    # The good state got through: the quadrant texture is on screen.
    view = head_eye_views((0, 1.6, 0), (1, 0, 0, 0), stereo=False)[0][0]
    x, y = uv_pixel(dev_head_mesh(), LEFT_POS, (0.25, 0.25), view)
    assert close(backend.last_image[y, x, :3], QUADRANT_COLOURS[0], tol=20)


def test_grabbed_avatar_moves_and_the_scene_is_saved_atomically(tmp_path):
    scene_path = tmp_path / "scene.json"
    scene = two_avatar_scene(tmp_path)
    scene.save(scene_path)
    scene = Scene.load(scene_path)
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32)),
                                      "bob": StaticStream(dev_texture(), np.zeros(2, np.float32))})

    def hands(frame: int):
        # The right hand squeezes at alice's position, then carries her 0.3 m to the left.
        if frame < 2:
            return {"right": HandState(True, LEFT_POS, (0, 0, 0, 1), 0.0)}
        dx = -0.3 * min(1.0, (frame - 2) / 6)
        pos = (LEFT_POS[0] + dx, LEFT_POS[1], LEFT_POS[2])
        return {"right": HandState(True, pos, (0, 0, 0, 1), 1.0 if frame < 10 else 0.0)}

    node = RenderNode(scene, assets(), source, RenderNodeConfig(scene_save_path=scene_path))
    node.run(headless(hands_script=hands), max_frames=12)
    assert node.counters.placement_changes > 0
    before = set(os.listdir(tmp_path))
    node.save_scene()
    assert set(os.listdir(tmp_path)) == before  # no temporary file left behind
    saved = Scene.load(scene_path)
    assert saved.avatars[0].transform.position == pytest.approx((LEFT_POS[0] - 0.3, *LEFT_POS[1:]), abs=1e-4)
    assert saved.avatars[0].transform.rotation == pytest.approx((1, 0, 0, 0), abs=1e-4)
    assert saved.avatars[1].transform.position == pytest.approx(RIGHT_POS, abs=1e-6)
    assert json.loads(scene_path.read_text())["avatars"][0]["package"] == "pkg_a"


def test_node_writes_stats_with_upload_path_and_stream_states(tmp_path):
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    node = RenderNode(two_avatar_scene(tmp_path), assets(), source)
    stats = node.run(headless(), max_frames=3)
    assert stats["streams"]["alice"]["distinct_states"] == 3
    assert stats["streams"]["bob"]["state"] == "idle"       # nothing drives bob: idle look
    assert stats["counters"]["empty_polls"] == 3
    json.dumps(stats)  # serialisable as is
