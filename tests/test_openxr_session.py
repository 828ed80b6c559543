"""OpenXR sessions against a real Monado (null compositor, simulated HMD).

Run inside the Monado environment: `bash scripts/monado_env.sh run .venv/bin/python -m pytest -m xr
tests/test_openxr_session.py`. That starts one service for the run; the loss test starts its own
so it can kill it. Monado paces the null compositor at 20 Hz, so each test keeps to tens of frames.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np
import pytest

pytestmark = pytest.mark.xr

IN_MONADO_ENV = os.environ.get("HEADCAST_MONADO_ENV") == "1"
if not IN_MONADO_ENV and not os.environ.get("XR_RUNTIME_JSON"):
    pytest.skip("needs an OpenXR runtime: run under scripts/monado_env.sh run",
                allow_module_level=True)

from geometry import transforms  # noqa: E402
from xr_runtime.avatars.mesh import AvatarMeshData  # noqa: E402
from xr_runtime.gl.renderer import AvatarDrawState, Renderer  # noqa: E402
from xr_runtime.interrupts import stop_event_on_signals  # noqa: E402
from xr_runtime.openxr.session import OpenXRSession, XrSessionConfig  # noqa: E402

RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)
QUAD_HALF = 0.12
AVATAR_DISTANCE = 0.8


def quadrant_texture(size: int = 64) -> np.ndarray:
    tex = np.full((size, size, 4), 255, dtype=np.uint8)
    h = size // 2
    tex[:h, :h, :3], tex[:h, h:, :3] = RED, GREEN
    tex[h:, :h, :3], tex[h:, h:, :3] = BLUE, YELLOW
    return tex


def quad_mesh() -> AvatarMeshData:
    q = QUAD_HALF
    return AvatarMeshData(
        np.array([[-q, -q, 0], [q, -q, 0], [q, q, 0], [-q, q, 0]]),
        np.array([[0, 1], [1, 1], [1, 0], [0, 0]]),
        np.array([[0, 1, 2], [0, 2, 3]]), np.zeros((1, 4, 3)))


def head_locked_model(eye) -> np.ndarray:
    """Place the quad in front of the (left) eye, facing it, wherever the simulated head looks."""
    return transforms.pose_matrix(eye.position, eye.orientation) @ transforms.translation(0, 0, -AVATAR_DISTANCE)


@pytest.fixture
def xr_session():
    session = OpenXRSession(XrSessionConfig(reference_space="stage"))
    yield session
    session.close()


def test_session_focuses_renders_stereo_and_shows_the_avatar(xr_session):
    renderer = Renderer()
    avatar = renderer.add_avatar(quad_mesh(), texture_size=(64, 64))
    texture = quadrant_texture()
    checks, clock_errors, shapes = [], [], set()
    models = {}

    def on_frame(frame):
        if frame.display_time_monotonic_ns is not None:
            clock_errors.append(frame.display_time_monotonic_ns - time.monotonic_ns())

    def draw_eye(frame, eye):
        if eye.index == 0:
            models[frame.index] = head_locked_model(eye)
        state = AvatarDrawState(avatar, models[frame.index], np.zeros(1), texture, texture_serial=1)
        renderer.draw(eye.view, eye.projection, [state], eye.target)
        shapes.add((eye.width, eye.height))
        if frame.index % 8 == 0:
            # Read back the acquired swapchain image itself, before it is released.
            image = eye.target.read_rgba()
            mvp = eye.projection @ eye.view @ state.model_matrix
            for corner, colour in (((-1, 1), RED), ((1, 1), GREEN), ((-1, -1), BLUE), ((1, -1), YELLOW)):
                point = (corner[0] * QUAD_HALF / 2, corner[1] * QUAD_HALF / 2, 0.0)
                x, y = transforms.project_point(mvp, point, eye.width, eye.height)
                checks.append((frame.index, eye.index, colour, tuple(int(v) for v in image[int(y), int(x), :3])))
            if frame.index == 16 and os.environ.get("HEADCAST_SCREENSHOT_DIR"):
                from PIL import Image
                Image.fromarray(image).save(os.path.join(os.environ["HEADCAST_SCREENSHOT_DIR"],
                                                         f"xr_eye{eye.index}.png"))
            sky = image[1, eye.width // 2, :3].astype(int)
            checks.append((frame.index, eye.index, "scene", bool(sky[2] > sky[0])))

    hands_seen = []
    stats = xr_session.run(draw_eye, max_frames=32, timeout_s=30,
                           on_frame=lambda f: (on_frame(f), hands_seen.append(f.hands)))
    renderer.close()

    assert xr_session.runtime_name.startswith("Monado")
    # No X display in the Monado environment: "auto" took the surfaceless EGL binding.
    assert xr_session.graphics_kind == "egl" and "XR_MNDX_egl_enable" in xr_session.extensions
    # MSAA automatic: off on llvmpipe (measured 2.2-5x slower frames there, docs/BENCHMARKS.md).
    assert xr_session.msaa.samples == 0 and "software" in xr_session.msaa.reason
    assert all(sc.samples == 0 for sc in xr_session.swapchains)
    assert "FOCUSED" in stats.states
    assert stats.states[:2] == ["IDLE", "READY"]
    assert stats.frames_rendered >= 30, stats
    assert stats.views_rendered == 2 * stats.frames_rendered
    assert len(shapes) == 1 and min(next(iter(shapes))) > 0
    # At most the first frames may have shouldRender false.
    assert stats.frames_waited - stats.frames_rendered <= 3
    assert checks, "no frame was read back"
    for frame_index, eye_index, expected, got in checks:
        if expected == "scene":
            assert got, f"frame {frame_index} eye {eye_index}: sky not drawn"
        else:
            assert got == expected, f"frame {frame_index} eye {eye_index}: {got} != {expected}"
    assert {eye for _, eye, _, _ in checks} == {0, 1}
    # XrTime → CLOCK_MONOTONIC through XR_KHR_convert_timespec_time: predicted display times lie
    # a little in the future of "now", never seconds away.
    assert "XR_KHR_convert_timespec_time" in xr_session.extensions
    # The action system is attached and synced every focused frame; the simulated HMD has no
    # controllers, so both hands stay inactive (a real headset's controllers would be active).
    assert xr_session.input is not None and xr_session.input.profiles
    focused_hands = [h for h in hands_seen if h]
    assert len(focused_hands) >= 25
    assert all(set(h) == {"left", "right"} and not h["left"].active and not h["right"].active
               for h in focused_hands)
    assert xr_session.input.current_profiles() == {"left": "", "right": ""}
    assert clock_errors and all(-20e6 < e < 500e6 for e in clock_errors), clock_errors[:5]

    xr_session.close()
    assert stats.exited and not stats.lost
    assert stats.states[-2:] == ["IDLE", "EXITING"] and "STOPPING" in stats.states


def test_depth_layer_and_both_reference_spaces(xr_session):
    assert set(xr_session.spaces) == {"local", "stage"}
    assert xr_session.space_name == "stage"
    assert xr_session.depth_enabled, "Monado offers XR_KHR_composition_layer_depth"
    assert all(sc.depth is not None for sc in xr_session.swapchains)
    renderer = Renderer()
    avatar = renderer.add_avatar(quad_mesh())
    depths = []

    def draw_eye(frame, eye):
        # The quad straight ahead of this eye, so its depth at the image centre is known.
        model = head_locked_model(eye)
        renderer.draw(eye.view, eye.projection, [AvatarDrawState(avatar, model)], eye.target)
        centre = transforms.project_point(eye.projection @ eye.view @ model, (0, 0, 0), eye.width, eye.height)
        clip = eye.projection @ np.array([0.0, 0.0, -AVATAR_DISTANCE, 1.0])
        expected = clip[2] / clip[3] * 0.5 + 0.5
        depths.append((float(eye.target.read_depth()[int(centre[1]), int(centre[0])]), expected))

    stats = xr_session.run(draw_eye, max_frames=5, timeout_s=15)
    renderer.close()
    assert stats.frames_rendered == 5
    # The depth images submitted in the depth layer hold the scene's real depth.
    assert len(depths) == 10
    for got, expected in depths:
        assert got == pytest.approx(expected, abs=1e-4)


def test_local_space_without_depth_layer():
    with OpenXRSession(XrSessionConfig(reference_space="local", depth_layer=False)) as session:
        assert session.space_name == "local" and not session.depth_enabled
        renderer = Renderer()
        stats = session.run(lambda f, e: renderer.draw(e.view, e.projection, [], e.target),
                            max_frames=3, timeout_s=15)
        renderer.close()
        assert stats.frames_rendered == 3


def test_multisampled_eyes_resolve_into_swapchain_images():
    # MSAA framebuffers resolve colour and depth into the runtime's images; the depth blit needs
    # matching formats (Monado hands out GL_DEPTH24_STENCIL8 depth images).
    with OpenXRSession(XrSessionConfig(samples=4)) as session:
        assert session.depth_enabled
        renderer = Renderer()
        avatar = renderer.add_avatar(quad_mesh(), texture_size=(64, 64))
        centre_colours, models = [], {}

        def draw_eye(frame, eye):
            if eye.index == 0:
                models[frame.index] = head_locked_model(eye)
            state = AvatarDrawState(avatar, models[frame.index], texture=quadrant_texture(),
                                    texture_serial=1)
            renderer.draw(eye.view, eye.projection, [state], eye.target)
            mvp = eye.projection @ eye.view @ state.model_matrix
            x, y = transforms.project_point(mvp, (QUAD_HALF / 2, QUAD_HALF / 2, 0), eye.width, eye.height)
            centre_colours.append(tuple(int(v) for v in eye.target.read_rgba()[int(y), int(x), :3]))

        stats = session.run(draw_eye, max_frames=4, timeout_s=15)
        renderer.close()
        assert stats.frames_rendered == 4
        assert centre_colours and set(centre_colours) == {GREEN}


def test_display_refresh_rate_is_requested_and_matches_the_frame_period(xr_session):
    # Monado offers XR_FB_display_refresh_rate with one rate: its null compositor's 20 Hz.
    assert "XR_FB_display_refresh_rate" in xr_session.extensions
    state = xr_session.refresh_rate.state
    assert state.offered == [20.0] and state.requested == 20.0 and state.current == 20.0
    assert not state.error and not state.changes
    periods = []
    renderer = Renderer()
    stats = xr_session.run(lambda f, e: renderer.draw(e.view, e.projection, [], e.target), max_frames=8,
                           timeout_s=15, on_frame=lambda f: periods.append(f.predicted_display_period_ns))
    renderer.close()
    assert stats.frames_rendered == 8
    # The runtime paces at the rate it reports — once its pacing settled: a fresh monado-service
    # predicts its 60 Hz default (16 ms) for the first frame or two of the first session.
    assert len(periods) >= 8 and all(p == pytest.approx(1e9 / state.current, rel=0.01) for p in periods[-4:]), periods


def test_an_unoffered_refresh_rate_takes_the_nearest_offered_one(caplog):
    with caplog.at_level("WARNING", logger="xr_runtime.openxr.refresh_rate"):
        with OpenXRSession(XrSessionConfig(refresh_rate=90.0, controllers=False)) as session:
            assert session.refresh_rate.state.requested == 20.0
            assert session.refresh_rate.state.current == 20.0
    assert any("90.0 Hz not offered" in r.getMessage() for r in caplog.records)


def test_ctrl_c_stops_the_loop_then_clean_exit(xr_session):
    renderer = Renderer()

    def on_frame(frame):
        if frame.index == 6:
            os.kill(os.getpid(), signal.SIGINT)   # a real Ctrl-C, delivered to this process

    with stop_event_on_signals() as stop:
        stats = xr_session.run(lambda f, e: renderer.draw(e.view, e.projection, [], e.target),
                               stop=stop, on_frame=on_frame, timeout_s=15)
    renderer.close()
    assert stop.is_set()
    assert stats.reason == "stop requested" and not stats.exited
    assert 5 <= stats.frames_rendered <= 7
    xr_session.shutdown()
    assert stats.exited and stats.states[-1] == "EXITING"
    assert "STOPPING" in stats.states


@pytest.fixture
def private_monado(monkeypatch):
    """A second monado-service in its own runtime dir, so a test may kill it."""
    runtime_dir = tempfile.mkdtemp(prefix="mxl", dir="/tmp")
    env = dict(os.environ, XDG_RUNTIME_DIR=runtime_dir, XRT_COMPOSITOR_NULL="1",
               SIMULATED_ENABLE="1", XRT_NO_STDIN="1")
    service = subprocess.Popen(["monado-service"], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while not os.path.exists(os.path.join(runtime_dir, "monado_comp_ipc")):
        assert service.poll() is None, "monado-service exited at start"
        assert time.monotonic() < deadline, "monado-service socket did not appear"
        time.sleep(0.05)
    monkeypatch.setenv("XDG_RUNTIME_DIR", runtime_dir)
    yield service
    if service.poll() is None:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(5)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait()
    shutil.rmtree(runtime_dir, ignore_errors=True)


def test_runtime_death_is_reported_as_loss_and_survived(private_monado, monkeypatch):
    session = OpenXRSession()
    renderer = Renderer()
    draw = lambda f, e: renderer.draw(e.view, e.projection, [], e.target)  # noqa: E731
    assert session.run(draw, max_frames=4, timeout_s=15).frames_rendered == 4
    private_monado.kill()
    private_monado.wait()
    started = time.monotonic()
    stats = session.run(draw, max_frames=50, timeout_s=15)
    assert stats.lost and "Lost" in stats.reason, stats
    assert time.monotonic() - started < 5, "loss must end the loop promptly"
    renderer.close()
    session.close()   # must not raise or hang on the dead runtime
    session.close()   # and is idempotent

    # The process recovers: a fresh session against the run's own service renders again.
    monkeypatch.undo()
    with OpenXRSession() as again:
        renderer = Renderer()
        assert again.run(draw, max_frames=3, timeout_s=15).frames_rendered == 3
        renderer.close()


def test_a_failing_draw_callback_still_shuts_down_cleanly(xr_session):
    renderer = Renderer()

    def draw_eye(frame, eye):
        renderer.draw(eye.view, eye.projection, [], eye.target)
        if frame.index == 5 and eye.index == 1:
            raise RuntimeError("bug in a draw callback")

    with pytest.raises(RuntimeError, match="bug in a draw callback"):
        xr_session.run(draw_eye, max_frames=20, timeout_s=15)
    # The swapchain images were released despite the error, so the session can go on...
    stats = xr_session.run(lambda f, e: renderer.draw(e.view, e.projection, [], e.target),
                           max_frames=3, timeout_s=15)
    assert stats.frames_rendered >= 3 + 3
    renderer.close()
    # ...and end through the proper states.
    xr_session.shutdown()
    assert stats.exited and stats.states[-1] == "EXITING" and not stats.lost
