"""A GLFW window: the scene mono or side-by-side stereo, a simulated head, a status overlay.

Controls: left mouse drag looks around; W/A/S/D walk, Q/E down/up; right mouse drag grabs the
avatar under the cursor (scroll while holding: push / pull); F1 toggles the overlay; P saves the
placements (when the render node has a save path); Esc closes.

Eyes render into their own RenderTargets (sRGB, optionally MSAA) and are blitted into the window;
the overlay is drawn on top, then the buffers swap. Predicted display time = the last swap plus
an estimate of the swap interval (EMA of measured intervals): the next swap is when this frame
appears. PyOpenGL must resolve functions through GLX for a GLFW/GLX window (gl_platform).
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

import numpy as np
from OpenGL import GL

from core.errors import BackendUnavailable
from geometry import transforms
from xr_runtime.backends.base import (
    Backend,
    BackendFrame,
    BackendStats,
    EyeView,
    FrameHandler,
    SubmitTiming,
    head_eye_views,
    stop_reason,
)
from xr_runtime.backends.sim_head import MouseHand, SimulatedHead
from xr_runtime.gl.platform import use_platform

log = logging.getLogger(__name__)


class DesktopUnavailable(BackendUnavailable):
    """No display, no GLFW, or no OpenGL 3.3 core window; the message says which."""


@dataclass(frozen=True)
class DesktopConfig:
    width: int = 1280                # window size (both eyes together when stereo)
    height: int = 720
    stereo: bool = False
    vertical_fov_deg: float = 70.0
    near: float = 0.05
    far: float = 100.0
    samples: int = 4
    vsync: bool = True
    visible: bool = True
    overlay: bool = True
    head_position: tuple[float, float, float] = (0.0, 1.6, 0.0)
    head_rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)
    title: str = "headcast"


class DesktopBackend(Backend):
    name = "desktop"

    def __init__(self, config: DesktopConfig | None = None) -> None:
        self.config = config or DesktopConfig()
        self.window = None
        self._glfw = None
        self._targets: list = []
        self._target_size = (0, 0)
        self.overlay = None
        self.head = SimulatedHead.from_pose(self.config.head_position, self.config.head_rotation)
        self.hand = MouseHand()
        self._scroll = 0.0
        self._show_overlay = self.config.overlay
        self._keys_pressed: set[int] = set()
        self.last_overlay_lines: list[str] = []
        self._capture_requested = False
        self.captured: np.ndarray | None = None

    def open(self) -> None:
        try:
            import glfw
        except Exception as exc:  # the wheel ships libglfw; a broken install lands here
            raise DesktopUnavailable(f"GLFW not importable: {exc}") from exc
        self._glfw = glfw
        if not glfw.init():
            raise DesktopUnavailable("glfwInit failed (no display?)")
        c = self.config
        glfw.window_hint(glfw.CONTEXT_VERSION_MAJOR, 3)
        glfw.window_hint(glfw.CONTEXT_VERSION_MINOR, 3)
        glfw.window_hint(glfw.OPENGL_PROFILE, glfw.OPENGL_CORE_PROFILE)
        glfw.window_hint(glfw.OPENGL_FORWARD_COMPAT, True)
        glfw.window_hint(glfw.VISIBLE, c.visible)
        glfw.window_hint(glfw.SRGB_CAPABLE, True)
        self.window = glfw.create_window(c.width, c.height, c.title, None, None)
        if not self.window:
            glfw.terminate()
            raise DesktopUnavailable("could not create an OpenGL 3.3 core window")
        use_platform("glx")  # a GLFW window on X11 is a GLX context (gl_platform notes)
        glfw.make_context_current(self.window)
        glfw.swap_interval(1 if c.vsync else 0)
        glfw.set_scroll_callback(self.window, self._on_scroll)
        glfw.set_key_callback(self.window, self._on_key)
        from xr_runtime.gl.text_overlay import TextOverlay

        self.overlay = TextOverlay()
        self.gl_renderer = (GL.glGetString(GL.GL_RENDERER) or b"?").decode()

    def _on_scroll(self, window, dx, dy) -> None:
        self._scroll += dy

    def _on_key(self, window, key, scancode, action, mods) -> None:
        if action == self._glfw.PRESS:
            self._keys_pressed.add(key)

    def framebuffer_size(self) -> tuple[int, int]:
        return self._glfw.get_framebuffer_size(self.window)

    def _ensure_targets(self, fb_w: int, fb_h: int) -> tuple[int, int]:
        from xr_runtime.gl.target import RenderTarget

        eyes = 2 if self.config.stereo else 1
        eye_w, eye_h = max(1, fb_w // eyes), max(1, fb_h)
        if (eye_w, eye_h) != self._target_size or len(self._targets) != eyes:
            for t in self._targets:
                t.delete()
            self._targets = [RenderTarget(eye_w, eye_h, samples=self.config.samples) for _ in range(eyes)]
            self._target_size = (eye_w, eye_h)
        return eye_w, eye_h

    def _input(self, dt: float, handler, projection_tans: tuple[float, float], fb: tuple[int, int]):
        glfw, window = self._glfw, self.window
        keys = {name for name, code in (("w", glfw.KEY_W), ("a", glfw.KEY_A), ("s", glfw.KEY_S), ("d", glfw.KEY_D),
                                        ("q", glfw.KEY_Q), ("e", glfw.KEY_E))
                if glfw.get_key(window, code) == glfw.PRESS}
        self.head.move(dt, keys)
        cx, cy = glfw.get_cursor_pos(window)
        last = getattr(self, "_last_cursor", (cx, cy))
        if glfw.get_mouse_button(window, glfw.MOUSE_BUTTON_LEFT) == glfw.PRESS:
            self.head.look(cx - last[0], cy - last[1])
        self._last_cursor = (cx, cy)
        if glfw.KEY_ESCAPE in self._keys_pressed:
            glfw.set_window_should_close(window, True)
        if glfw.KEY_F1 in self._keys_pressed:
            self._show_overlay = not self._show_overlay
        if glfw.KEY_P in self._keys_pressed and hasattr(handler, "save_scene"):
            try:
                handler.save_scene()
            except ValueError as exc:
                log.warning("cannot save placements: %s", exc)
        self._keys_pressed.clear()
        win_w, win_h = glfw.get_window_size(window)
        eyes = 2 if self.config.stereo else 1
        eye_w = max(1, win_w // eyes)
        ndc_x = ((cx % eye_w) / eye_w) * 2 - 1
        ndc_y = 1 - (cy / max(1, win_h)) * 2
        direction = self.head.ray(ndc_x, ndc_y, *projection_tans)
        pressed = glfw.get_mouse_button(window, glfw.MOUSE_BUTTON_RIGHT) == glfw.PRESS
        scroll, self._scroll = self._scroll, 0.0
        if not pressed and not self.hand.held:
            return {}
        return self.hand.update(self.head, direction, pressed, scroll, getattr(handler, "pick_distance", None))

    def run(self, handler: FrameHandler, *, max_frames: int | None = None, seconds: float | None = None,
            stop: threading.Event | None = None) -> BackendStats:
        glfw, c = self._glfw, self.config
        stats = BackendStats(self.name, info={"gl_renderer": self.gl_renderer, "stereo": c.stereo})
        period_ns = int(1e9 / 60)
        last_swap_ns = time.monotonic_ns()
        t0 = last_swap_ns
        last_t = time.perf_counter()
        index = 0
        while True:
            reason = stop_reason(index, max_frames, t0, seconds, stop)
            if reason is not None:
                stats.reason = reason
                break
            glfw.poll_events()
            if glfw.window_should_close(self.window):
                stats.reason = "window closed"
                break
            now = time.perf_counter()
            dt, last_t = now - last_t, now
            fb_w, fb_h = self.framebuffer_size()
            if fb_w == 0 or fb_h == 0:  # minimised
                time.sleep(0.05)
                continue
            eye_w, eye_h = self._ensure_targets(fb_w, fb_h)
            half_v = math.radians(c.vertical_fov_deg) / 2
            tans = (math.tan(half_v) * eye_w / eye_h, math.tan(half_v))
            hands = self._input(dt, handler, tans, (fb_w, fb_h))
            projection = transforms.projection_symmetric(c.vertical_fov_deg, eye_w / eye_h, c.near, c.far)
            frame = BackendFrame(index, last_swap_ns + period_ns, period_ns, hands=hands)
            handler.begin_frame(frame)
            views = head_eye_views(self.head.position, self.head.rotation, c.stereo)
            for eye_index, ((view, _), target) in enumerate(zip(views, self._targets)):
                handler.draw_eye(frame, EyeView(eye_index, view, projection, target))
                stats.views += 1
            t = time.perf_counter()
            self._present(fb_w, fb_h, eye_w, eye_h, handler)
            if self._capture_requested:
                self.captured = self._read_back_buffer(fb_w, fb_h)
                self._capture_requested = False
            glfw.swap_buffers(self.window)
            swap_ns = time.monotonic_ns()
            # EMA of the swap interval: with vsync it converges on the display's refresh period.
            period_ns = int(0.9 * period_ns + 0.1 * max(1_000_000, swap_ns - last_swap_ns))
            last_swap_ns = swap_ns
            handler.end_frame(frame, SubmitTiming((time.perf_counter() - t) * 1e3))
            index += 1
            stats.frames += 1
        stats.seconds = (time.monotonic_ns() - t0) / 1e9
        return stats

    def _present(self, fb_w: int, fb_h: int, eye_w: int, eye_h: int, handler) -> None:
        GL.glBindFramebuffer(GL.GL_DRAW_FRAMEBUFFER, 0)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)  # copy the sRGB-encoded bytes as they are
        GL.glViewport(0, 0, fb_w, fb_h)
        GL.glClearColor(0, 0, 0, 1)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT)
        for i, target in enumerate(self._targets):
            GL.glBindFramebuffer(GL.GL_READ_FRAMEBUFFER, target.resolve_fbo)
            GL.glBlitFramebuffer(0, 0, eye_w, eye_h, i * eye_w, 0, (i + 1) * eye_w, eye_h,
                                 GL.GL_COLOR_BUFFER_BIT, GL.GL_NEAREST)
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, 0)
        if self._show_overlay and hasattr(handler, "status_lines"):
            self.last_overlay_lines = list(handler.status_lines())
            self.overlay.draw(self.last_overlay_lines, fb_w, fb_h)

    def request_capture(self) -> None:
        """Keep the next presented frame (window pixels, top row first) in `captured` (tests,
        screenshots). Read from the back buffer just before the swap: after a swap the front
        buffer's contents are undefined (Mesa under Xvfb returns zeros)."""
        self._capture_requested = True

    @staticmethod
    def _read_back_buffer(fb_w: int, fb_h: int) -> np.ndarray:
        from xr_runtime.gl.target import read_back_buffer

        return read_back_buffer(fb_w, fb_h)

    def close(self) -> None:
        if self.window is None:
            return
        self._glfw.make_context_current(self.window)
        for t in self._targets:
            t.delete()
        self._targets = []
        if self.overlay is not None:
            self.overlay.close()
            self.overlay = None
        self._glfw.destroy_window(self.window)
        self.window = None
        self._glfw.terminate()
