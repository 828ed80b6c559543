"""OpenXR through the GLX binding (XrGraphicsBindingOpenGLXlibKHR) against a real Monado, with the GL
context of a hidden GLFW window on a private Xvfb (llvmpipe): what SteamVR on Linux needs, and
what "auto" picks whenever an X display exists.

Run inside the Monado environment (it installs Xvfb in the Monado root):
`bash scripts/monado_env.sh run .venv/bin/python -m pytest -m xr tests/test_openxr_glx.py`.
Skipped only where no Xvfb binary exists.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

pytestmark = pytest.mark.xr

if os.environ.get("HEADCAST_MONADO_ENV") != "1" and not os.environ.get("XR_RUNTIME_JSON"):
    pytest.skip("needs an OpenXR runtime: run under scripts/monado_env.sh run", allow_module_level=True)

from pathlib import Path  # noqa: E402

from _xvfb import xvfb  # noqa: E402,F401  (fixture)
from test_openxr_session import (BLUE, GREEN, QUAD_HALF, RED, YELLOW, head_locked_model, quad_mesh,  # noqa: E402
                                 quadrant_texture)

from geometry import transforms  # noqa: E402
from xr_runtime.gl.platform import current_platform_name  # noqa: E402
from xr_runtime.gl.renderer import AvatarDrawState, Renderer  # noqa: E402
from xr_runtime.openxr.session import OpenXRSession, XrSessionConfig  # noqa: E402

CORNERS = (((-1, 1), RED), ((1, 1), GREEN), ((-1, -1), BLUE), ((1, -1), YELLOW))


def _render_quadrants(session: OpenXRSession, frames: int, check_every: int = 4):
    """Draw the head-locked quadrant quad; read back the acquired swapchain images; return
    (stats, [(frame, eye, expected, got)])."""
    renderer = Renderer()
    avatar = renderer.add_avatar(quad_mesh(), texture_size=(64, 64))
    texture = quadrant_texture()
    checks, models = [], {}

    def draw_eye(frame, eye):
        if eye.index == 0:
            models[frame.index] = head_locked_model(eye)
        state = AvatarDrawState(avatar, models[frame.index], np.zeros(1), texture, texture_serial=1)
        renderer.draw(eye.view, eye.projection, [state], eye.target)
        if frame.index % check_every == 0:
            image = eye.target.read_rgba()  # the swapchain image itself, before release
            mvp = eye.projection @ eye.view @ state.model_matrix
            for corner, colour in CORNERS:
                x, y = transforms.project_point(mvp, (corner[0] * QUAD_HALF / 2, corner[1] * QUAD_HALF / 2, 0.0),
                                            eye.width, eye.height)
                checks.append((frame.index, eye.index, colour, tuple(int(v) for v in image[int(y), int(x), :3])))

    try:
        stats = session.run(draw_eye, max_frames=frames, timeout_s=30)
    finally:
        renderer.close()
    return stats, checks


def test_glx_binding_focuses_renders_stereo_with_msaa_and_exact_pixels(xvfb):
    with OpenXRSession(XrSessionConfig(graphics="glx", samples=4)) as session:
        assert session.graphics_kind == "glx"
        assert current_platform_name() == "glx"            # PyOpenGL resolves through GLX now
        # The binding asked for no EGL extension: only what GLX needs (plus optional ones).
        assert "XR_KHR_opengl_enable" in session.extensions
        assert "XR_MNDX_egl_enable" not in session.extensions
        handles = session.graphics.handles
        assert handles.display and handles.context and handles.drawable and handles.fbconfig
        assert handles.visualid > 0
        assert session.graphics.window.visible is False        # hidden: no mirror asked for
        assert session.msaa.samples == 4                        # llvmpipe's GL_MAX_SAMPLES is 4
        stats, checks = _render_quadrants(session, frames=32)
        assert "FOCUSED" in stats.states and stats.states[:2] == ["IDLE", "READY"]
        assert stats.frames_rendered >= 30 and stats.views_rendered == 2 * stats.frames_rendered
        assert stats.frames_waited - stats.frames_rendered <= 3
        assert {eye for _, eye, _, _ in checks} == {0, 1} and len(checks) >= 8 * 4 * 2
        wrong = [c for c in checks if c[2] != c[3]]
        assert not wrong, wrong[:4]                            # resolved into the swapchain images, exact
        session.close()
        assert stats.exited and not stats.lost
        assert stats.states[-2:] == ["IDLE", "EXITING"] and "STOPPING" in stats.states


def test_egl_still_renders_exactly_after_a_glx_session_in_the_same_process(xvfb):
    """PyOpenGL's platform is switched per binding: GLX for the GLFW context, back to EGL for the
    surfaceless one — in one process, with a display present (EGL explicitly requested)."""
    with OpenXRSession(XrSessionConfig(graphics="glx", controllers=False)) as glx_session:
        stats, checks = _render_quadrants(glx_session, frames=4, check_every=2)
        assert stats.frames_rendered == 4 and checks and all(c[2] == c[3] for c in checks)
    with OpenXRSession(XrSessionConfig(graphics="egl", controllers=False)) as egl_session:
        assert egl_session.graphics_kind == "egl" and current_platform_name() == "egl"
        assert "XR_MNDX_egl_enable" in egl_session.extensions
        stats, checks = _render_quadrants(egl_session, frames=4, check_every=2)
        assert stats.frames_rendered == 4 and checks
        wrong = [c for c in checks if c[2] != c[3]]
        assert not wrong, wrong[:4]


def test_render_node_auto_picks_glx_and_mirrors_the_left_eye_in_the_session_window(xvfb):
    """With DISPLAY set, "auto" takes GLX and the mirror is the session's own window: the left eye
    blitted in the same context. The window's pixels (read before the swap) show the eye image."""
    from test_render_node_xr import CheckingNode

    from xr_runtime.backends.openxr import OpenXRBackend
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture, solid_texture
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.render_node import RenderNodeConfig
    from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform
    from xr_runtime.avatars.sampler import SamplerConfig

    backend = OpenXRBackend()           # mirror: default, on because a display exists
    pairs = []

    class Mirrored(CheckingNode):
        def draw_eye(self, frame, eye):
            super().draw_eye(frame, eye)
            if eye.index == 0 and frame.index in (12, 20):
                self.eye_image = eye.target.read_rgba()
                backend.mirror.request_capture()

        def end_frame(self, frame, timing):
            super().end_frame(frame, timing)
            if getattr(self, "eye_image", None) is not None and backend.mirror.captured is not None:
                pairs.append((self.eye_image, backend.mirror.captured))
                self.eye_image, backend.mirror.captured = None, None

    scene = Scene([AvatarSlot(Path("a"), "alice", Transform((0, 1.6, -0.6)))])
    source = StaticAvatarStateSource({"alice": StaticStream(dev_texture(), np.zeros(2, np.float32))})
    node = Mirrored(scene, [AvatarAssets(dev_head_mesh(), solid_texture((30, 30, 200)))], source,
                    RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0)))
    stats = node.run(backend, max_frames=24, seconds=30)

    info = stats["backend_info"]
    assert info["graphics"] == "glx" and "X display" in info["graphics_reason"], info
    assert info["mirror"] == "same-context"
    assert info["samples"] == 0 and "software" in info["samples_reason"]   # llvmpipe: measured choice
    assert info["refresh_rate"]["current"] == 20.0
    assert stats["frames"] == 24 and info["states"][-1] == "EXITING"
    wrong = [c for c in node.checks if max(abs(a - b) for a, b in zip(c[2], c[3])) > 12]
    assert node.checks and not wrong, wrong[:4]
    assert len(pairs) == 2
    for eye_image, window in pairs:
        h, w = window.shape[:2]
        assert (w, h) == (640, 360)
        eh, ew = eye_image.shape[:2]
        # Sample the window on a grid and compare with the eye image at the same relative place
        # (the blit scales with linear filtering: tolerate a few levels, and edges between regions).
        diffs = []
        for fy in np.linspace(0.1, 0.9, 9):
            for fx in np.linspace(0.1, 0.9, 9):
                got = window[int(fy * h), int(fx * w), :3].astype(int)
                want = eye_image[int(fy * eh), int(fx * ew), :3].astype(int)
                diffs.append(int(np.abs(got - want).max()))
        assert np.median(diffs) <= 4 and sum(d > 24 for d in diffs) <= 8, diffs
        assert window[..., :3].std() > 5                      # not a blank window


def test_auto_falls_back_to_egl_when_the_x_display_gives_no_context(monkeypatch, tmp_path):
    """A stale DISPLAY (no X server behind it): "auto" chose GLX, GLFW cannot open the display, and
    the session takes the EGL binding instead of failing — before the instance fixes its extensions."""
    monkeypatch.setenv("DISPLAY", ":87")                   # nothing listens there (private /tmp/.X11-unix)
    assert not (Path("/tmp/.X11-unix") / "X87").exists()
    with OpenXRSession(XrSessionConfig(controllers=False)) as session:
        assert session.graphics_kind == "egl" and "GLX failed" in session.graphics_choice.reason
        assert "XR_MNDX_egl_enable" in session.extensions
        stats, checks = _render_quadrants(session, frames=3, check_every=1)
        assert stats.frames_rendered == 3 and checks and all(c[2] == c[3] for c in checks)
    # Asked for explicitly, GLX does not fall back: the error names the cause.
    from xr_runtime.openxr.errors import XrUnavailableError

    with pytest.raises(XrUnavailableError, match="no glx context"):
        OpenXRSession(XrSessionConfig(graphics="glx", controllers=False))
