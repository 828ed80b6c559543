"""Offscreen rendering through surfaceless EGL: PNG frames or an MP4 (H.264, each frame stamped
with its display time: a late frame leaves a gap), for tests, evaluation and machines without a
display or headset.

The head is simulated and fixed (the scene's viewer pose). Stereo renders two eyes IPD apart and
writes them side by side. Paced mode simulates a display refreshing at `fps` (`frame_pacer`): a
frame starts just in time for its vsync (or at the period's start, `wake="period_start"`) and its
display time is that vsync; unpaced mode renders as fast as possible and predicts "now" (there
is no display to wait for).
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from OpenGL import GL

from geometry import transforms
from media.video_writer import Mp4Writer, VideoConfig
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
from xr_runtime.backends.frame_pacer import FramePacer
from xr_runtime.gl.egl_context import GLContextConfig, GLContextError, HeadlessGLContext
from xr_runtime.gl.target import RenderTarget
from xr_runtime.scene.hand import HandState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadlessConfig:
    width: int = 640                 # per eye
    height: int = 480
    stereo: bool = False
    vertical_fov_deg: float = 60.0
    near: float = 0.05
    far: float = 100.0
    fps: float = 60.0                # pacing rate, and the MP4's frame rate
    paced: bool = False
    wake: str = "late"               # paced: when a frame starts before its vsync (frame_pacer.WAKES)
    samples: int = 0                 # MSAA
    head_position: tuple[float, float, float] = (0.0, 1.6, 0.0)
    head_rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # wxyz
    out: Path | None = None          # *.mp4 → video; anything else → directory of PNG frames
    video: VideoConfig = VideoConfig()   # codec of an MP4 `out` (H.264 unless asked otherwise)
    read_back: bool = False          # keep the last composed frame in `last_image` (tests)
    frame_feed: str | None = None    # publish eye 0 here when it is shown (display_feed; bench glass)
    gl: GLContextConfig = GLContextConfig()
    # Scripted controllers (tests, evaluation): frame index → {hand name: HandState}.
    hands_script: Callable[[int], Mapping[str, HandState]] | None = None


class FrameWriter:
    """PNG frames into a directory, or an MP4 (`media.video_writer`: H.264 with the frames' display
    times, or the old mp4v by `video`) — chosen by the suffix."""

    def __init__(self, out: Path, fps: float, video: VideoConfig = VideoConfig()) -> None:
        self.out = Path(out)
        self.frames = 0
        self.video: Mp4Writer | None = None
        if self.out.suffix.lower() == ".mp4":
            self.video = Mp4Writer(self.out, nominal_fps=fps, config=video)
        else:
            self.out.mkdir(parents=True, exist_ok=True)

    def write(self, rgba: np.ndarray, t_ns: int | None = None) -> None:
        if self.video is not None:
            self.video.write(rgba, t_ns)
        else:
            import cv2

            path = self.out / f"frame_{self.frames:05d}.png"
            if not cv2.imwrite(str(path), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR)):
                raise OSError(f"cannot write {path}")
        self.frames += 1

    def close(self) -> None:
        if self.video is not None:
            self.video.close()
            self.video = None


class HeadlessBackend(Backend):
    name = "headless"

    def __init__(self, config: HeadlessConfig | None = None) -> None:
        self.config = config or HeadlessConfig()
        self._gl: HeadlessGLContext | None = None
        self._targets: list[RenderTarget] = []
        self._writer: FrameWriter | None = None
        self._feed = None
        self.last_image: np.ndarray | None = None

    def open(self) -> None:
        c = self.config
        try:
            self._gl = HeadlessGLContext(c.gl)
        except GLContextError:
            if c.gl.display != "surfaceless":
                raise
            # NVIDIA's EGL has no surfaceless platform; its headless path is the device platform.
            log.info("surfaceless EGL unavailable; trying the EGL device platform")
            self._gl = HeadlessGLContext(replace(c.gl, display="device", cuda_device=0))
        self._targets = [RenderTarget(c.width, c.height, samples=c.samples) for _ in range(2 if c.stereo else 1)]
        if c.out is not None:
            self._writer = FrameWriter(c.out, c.fps, c.video)
        if c.frame_feed is not None:
            from xr_runtime.backends.display_feed import DisplayFeed

            self._feed = DisplayFeed(c.frame_feed)
        self.projection = transforms.projection_symmetric(c.vertical_fov_deg, c.width / c.height, c.near, c.far)

    @property
    def renderer_name(self) -> str:
        return self._gl.renderer if self._gl else ""

    def run(self, handler: FrameHandler, *, max_frames: int | None = None, seconds: float | None = None,
            stop: threading.Event | None = None) -> BackendStats:
        c = self.config
        stats = BackendStats(self.name, info={"gl_renderer": self.renderer_name, "stereo": c.stereo,
                                              "size": [c.width * len(self._targets), c.height]})
        period_ns = int(1e9 / c.fps)
        views = head_eye_views(c.head_position, c.head_rotation, c.stereo)
        t0 = time.monotonic_ns()
        pacer = FramePacer(period_ns, t0, c.wake)
        stats.info["wake"] = c.wake if c.paced else "unpaced"
        index = 0
        while True:
            reason = stop_reason(index, max_frames, t0, seconds, stop)
            if reason is not None:
                stats.reason = reason
                break
            wait_start = time.monotonic_ns()
            if c.paced:
                start_ns, display_ns = pacer.next_frame(wait_start)
                delay = start_ns - time.monotonic_ns()
                if delay > 0:
                    time.sleep(delay / 1e9)
            else:
                display_ns = time.monotonic_ns()
            frame_start = time.monotonic_ns()
            hands = c.hands_script(index) if c.hands_script is not None else {}
            frame = BackendFrame(index, display_ns, period_ns, hands=hands,
                                 wait_ms=(time.monotonic_ns() - wait_start) / 1e6)
            handler.begin_frame(frame)
            for (view, _), target, eye_index in zip(views, self._targets, range(len(views))):
                handler.draw_eye(frame, EyeView(eye_index, view, self.projection, target))
                stats.views += 1
            t = time.perf_counter()
            GL.glFinish()  # the offscreen analogue of submit: the frame is complete on the GPU
            submit_ms = (time.perf_counter() - t) * 1e3
            submitted_ns = time.monotonic_ns()
            pacer.record_work(submitted_ns - frame_start)
            displayed_ns = pacer.shown_at(display_ns, submitted_ns) if c.paced else submitted_ns
            t = time.perf_counter()
            if self._feed is not None:
                self._feed.shown(self._targets[0].read_rgba(), index, displayed_ns)
            if self._writer is not None or c.read_back:
                image = np.hstack([target.read_rgba() for target in self._targets])
                if c.read_back:
                    self.last_image = image
                if self._writer is not None:
                    self._writer.write(image, displayed_ns)   # when it was shown: a late frame leaves a gap
            handler.end_frame(frame, SubmitTiming(submit_ms, (time.perf_counter() - t) * 1e3,
                                                  submitted_ns=submitted_ns, displayed_ns=displayed_ns))
            index += 1
            stats.frames += 1
        stats.seconds = (time.monotonic_ns() - t0) / 1e9
        if c.paced:
            stats.info["missed_vsyncs"] = pacer.missed
            stats.info["late_frames"] = pacer.late_frames
        if self._feed is not None:
            stats.info["frame_feed"] = {"endpoint": self._feed.endpoint, "sent": self._feed.sent,
                                        "replaced": self._feed.replaced}
        if self._writer is not None:
            stats.info["out"] = str(self._writer.out)
            stats.info["frames_written"] = self._writer.frames
        return stats

    def close(self) -> None:
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._gl is not None:
            self._gl.make_current()
            for target in self._targets:
                target.delete()
            self._targets = []
            self._gl.close()
            self._gl = None
