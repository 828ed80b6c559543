"""Backend choice, the simulated desktop head, and the desktop backend in a real window (Xvfb)."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
from _xvfb import xvfb  # noqa: F401  (fixture: a private X server)

from xr_runtime.backends.select import active_runtime_manifest, choose_backend
from xr_runtime.backends.sim_head import MouseHand, SimulatedHead
from xr_runtime.scene.grab import GrabController


def never(*_):
    raise AssertionError("the probe must not run without an active runtime")


def test_auto_prefers_openxr_when_a_runtime_answers(tmp_path):
    env = {"XR_RUNTIME_JSON": str(tmp_path / "rt.json"), "DISPLAY": ":0"}
    choice = choose_backend("auto", env, probe=lambda: (True, ""))
    assert choice.name == "openxr" and "rt.json" in choice.reason


def test_auto_falls_back_to_desktop_then_headless_and_says_why(tmp_path):
    env = {"XR_RUNTIME_JSON": str(tmp_path / "rt.json"), "DISPLAY": ":0"}
    choice = choose_backend("auto", env, probe=lambda: (False, "RuntimeFailure: no service"))
    assert choice.name == "desktop" and "no service" in choice.reason
    assert choose_backend("auto", {"WAYLAND_DISPLAY": "wayland-0", "HOME": str(tmp_path)}, probe=never).name == "desktop"
    headless = choose_backend("auto", {"HOME": str(tmp_path), "XDG_CONFIG_DIRS": str(tmp_path / "none")}, probe=never)
    assert headless.name == "headless" and "no DISPLAY" in headless.reason


def test_active_runtime_json_is_found_where_the_loader_looks(tmp_path):
    conf = tmp_path / "conf" / "openxr" / "1"
    conf.mkdir(parents=True)
    (conf / "active_runtime.json").write_text("{}")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "conf"), "XDG_CONFIG_DIRS": str(tmp_path / "none")}
    assert active_runtime_manifest(env) == conf / "active_runtime.json"
    assert choose_backend("auto", env, probe=lambda: (True, "")).name == "openxr"


def test_explicit_backend_is_taken_as_is_and_unknown_names_are_refused():
    assert choose_backend("headless", {}, probe=never).name == "headless"
    with pytest.raises(ValueError, match="unknown backend"):
        choose_backend("vulkan", {}, probe=never)


def test_simulated_head_walks_level_and_looks_with_the_mouse():
    head = SimulatedHead()
    head.move(1.0, {"w"})
    assert head.position == pytest.approx((0, 1.6, -1.5))
    head.look(-math.radians(90) / head.sensitivity, 0)     # mouse left: turn left (+yaw)
    assert head.forward() == pytest.approx((-1, 0, 0), abs=1e-6)
    head.look(0, -1e6)                                       # looking far up is clamped
    assert math.degrees(head.pitch) == pytest.approx(85)
    head.move(1.0, {"w"})                                    # still walks level
    assert head.position[1] == pytest.approx(1.6)
    again = SimulatedHead.from_pose(head.position, head.rotation)
    assert (again.yaw, again.pitch) == pytest.approx((head.yaw, head.pitch))


def test_mouse_hand_grabs_the_avatar_under_the_cursor():
    head = SimulatedHead()
    placements = {"0": np.eye(4, dtype=np.float32)}
    placements["0"][:3, 3] = (0.0, 1.6, -2.0)
    grab, hand = GrabController(), MouseHand()
    pick = lambda o, d: 2.0 if abs(d[0]) < 0.1 else None  # noqa: E731
    ray = head.ray(0, 0, 1, 1)
    moved = grab.update(hand.update(head, ray, True, 0, pick), placements)
    assert moved and moved["0"][:3, 3] == pytest.approx((0, 1.6, -2.0), abs=1e-5)
    moved = grab.update(hand.update(head, ray, True, 1.0, pick), placements)  # scroll: push away
    assert moved["0"][2, 3] == pytest.approx(-2.2, abs=1e-4)


# ---------------------------------------------------------------------------------- desktop window

def test_desktop_backend_shows_avatars_side_by_side_with_a_status_overlay(xvfb, tmp_path):
    from geometry import transforms
    from xr_runtime.backends.base import head_eye_views
    from xr_runtime.backends.desktop import DesktopBackend, DesktopConfig
    from xr_runtime.avatars.dev_source import QUADRANT_COLOURS, StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture, solid_texture
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.render_node import RenderNode, RenderNodeConfig
    from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform
    from xr_runtime.avatars.sampler import SamplerConfig

    assert choose_backend("auto").name in ("desktop", "openxr")
    scene = Scene([AvatarSlot(tmp_path / "a", "alice", Transform((0.0, 1.6, -0.7)))])
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    backend = DesktopBackend(DesktopConfig(width=480, height=240, stereo=True, samples=0, vsync=False))
    captured = {}

    class Capturing(RenderNode):
        def end_frame(self, frame, timing):
            super().end_frame(frame, timing)
            if frame.index == 6:
                backend.request_capture()   # the next frame's window pixels, before its swap
            if frame.index == 7:
                captured["window"] = backend.captured
                captured["overlay"] = list(backend.last_overlay_lines)

    node = Capturing(scene, [AvatarAssets(dev_head_mesh(), solid_texture((30, 30, 200)))], source,
                     RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0)))
    stats = node.run(backend, max_frames=8)
    assert stats["backend"] == "desktop" and stats["frames"] == 8 and stats["views"] == 16
    image = captured["window"]
    if os.environ.get("HEADCAST_SCREENSHOT_DIR"):
        import cv2
        cv2.imwrite(os.path.join(os.environ["HEADCAST_SCREENSHOT_DIR"], "desktop_window.png"), image[..., 2::-1])
    assert image.shape == (240, 480, 4)
    mesh = dev_head_mesh()
    proj = transforms.projection_symmetric(70.0, 240 / 240, 0.05, 100.0)
    model = transforms.translation(0.0, 1.6, -0.7)
    for eye, (view, _) in enumerate(head_eye_views((0, 1.6, 0), (1, 0, 0, 0), True)):
        for uv, colour in zip(((0.25, 0.25), (0.75, 0.75)), (QUADRANT_COLOURS[0], QUADRANT_COLOURS[3])):
            i = int(np.argmin(np.linalg.norm(mesh.uvs - np.asarray(uv), axis=1)))
            x, y = transforms.project_point(proj @ view @ model, mesh.positions[i], 240, 240)
            got = image[int(y), eye * 240 + int(x), :3]
            assert max(abs(int(a) - int(b)) for a, b in zip(got, colour)) <= 12, (eye, uv, got)
    # The overlay: a dark panel with white glyphs in the top-left corner, saying fps and the stream.
    assert any("fps" in line for line in captured["overlay"])
    assert any(line.startswith("alice: live") for line in captured["overlay"])
    panel = image[4:4 + 15 * len(captured["overlay"]), 4:120, :3].astype(int)
    assert (panel.max(axis=2) > 200).sum() > 50        # glyph pixels
    assert (panel.max(axis=2) < 90).sum() > 500         # panel pixels


def test_mirror_window_shows_frames_of_a_surfaceless_context(xvfb):
    """The OpenXR mirror's mechanism: frames drawn in a surfaceless EGL context (as the session's)
    appear in a window of another context, and the source context is current again afterwards."""
    from OpenGL import GL

    from xr_runtime.backends.mirror import MirrorWindow
    from xr_runtime.gl.egl_context import HeadlessGLContext
    from xr_runtime.gl.target import RenderTarget

    ctx = HeadlessGLContext()
    target = RenderTarget(320, 240)
    mirror = MirrorWindow(160, 120)
    try:
        mirror.open(restore=ctx.make_current)
        for colour_left, colour_right in (((1, 0, 0), (0, 1, 0)), ((0, 0, 1), (1, 1, 0))):
            target.bind()
            GL.glEnable(GL.GL_SCISSOR_TEST)
            for x, colour in ((0, colour_left), (160, colour_right)):
                GL.glScissor(x, 0, 160, 240)
                GL.glClearColor(*colour, 1)
                GL.glClear(GL.GL_COLOR_BUFFER_BIT)
            GL.glDisable(GL.GL_SCISSOR_TEST)
            mirror.request_capture()
            mirror.capture(target)
            assert mirror.present(restore=ctx.make_current)
            window = mirror.captured
            assert window.shape == (120, 160, 4)
            left, right = window[60, 40, :3], window[60, 120, :3]
            assert tuple(left) == tuple(255 * c for c in colour_left), left
            assert tuple(right) == tuple(255 * c for c in colour_right), right
            # The source context is current again: it still reads its own target.
            assert tuple(target.read_rgba()[10, 10, :3]) == tuple(255 * c for c in colour_left)
        assert mirror.presented == 2
    finally:
        mirror.close(restore=ctx.make_current)
        target.delete()
        ctx.close()
