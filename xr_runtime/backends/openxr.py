"""The OpenXR backend: `OpenXRSession` (instance, GL binding, swapchains, lifecycle) driving the
render node's FrameHandler.

Timing as seen from here: `OpenXRSession.run` calls `on_frame` after xrWaitFrame + xrBeginFrame,
and xrEndFrame happens inside it after the last eye. So `wait_ms` is the time from the end of
the previous frame's last eye to this frame's `on_frame` (image release + xrEndFrame + wait +
begin); `submit_ms` is not separable here and reported as None. With a display, a mirror window
shows the left eye: with the GLX/WGL bindings the session's own window (`window_mirror.py`, a
blit in the same context), with EGL a second window fed through the host (`mirror.py`). The
stats report the binding, the MSAA samples and the display refresh rate. The predicted display time is the
runtime's, converted to CLOCK_MONOTONIC with XR_KHR_convert_timespec_time; without that
extension "now + one display period" stands in.
"""
from __future__ import annotations

import logging
import os
import threading
import time

from xr_runtime.backends.base import Backend, BackendFrame, BackendStats, FrameHandler, SubmitTiming

log = logging.getLogger(__name__)


class _AnyEvent:
    """Set when any of the given events is (what OpenXRSession.run polls as its `stop`)."""

    def __init__(self, *events) -> None:
        self._events = [e for e in events if e is not None]

    def is_set(self) -> bool:
        return any(e.is_set() for e in self._events)


class OpenXRBackend(Backend):
    name = "openxr"

    def __init__(self, config=None, mirror: bool | None = None) -> None:
        """`mirror`: a desktop window showing the left eye; None = when a display exists."""
        from xr_runtime.openxr.session import XrSessionConfig

        self.config = config or XrSessionConfig()
        self.session = None
        if mirror is None:
            mirror = bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
        self.want_mirror = mirror
        self.mirror = None
        self._stats: BackendStats | None = None
        self.face_stream = None  # openxr.face_tracking.WearerFaceTarget: publish the wearer's face there
        self._face = None

    def open(self) -> None:
        from xr_runtime.openxr.session import OpenXRSession

        self.session = OpenXRSession(self.config)
        self.session.make_current()
        if self.want_mirror:
            window = getattr(self.session.graphics, "window", None)
            if window is not None:
                from xr_runtime.backends.window_mirror import SameContextMirror

                self.mirror = SameContextMirror(window)
                self.mirror.open()
                return
            from xr_runtime.backends.mirror import MirrorUnavailable, MirrorWindow

            mirror = MirrorWindow()
            try:
                mirror.open(restore=self.session.make_current)
                self.mirror = mirror
            except MirrorUnavailable as exc:  # the headset works without it
                log.warning("no mirror window: %s", exc)
                self.session.make_current()

    def run(self, handler: FrameHandler, *, max_frames: int | None = None, seconds: float | None = None,
            stop: threading.Event | None = None) -> BackendStats:
        session = self.session
        views = len(session.swapchains)
        pending: dict[str, object] = {"frame": None, "eyes": 0}
        last_end = [None]

        def finish_pending():
            frame = pending["frame"]
            if frame is not None:
                handler.end_frame(frame, SubmitTiming(None))
                pending["frame"] = None
                last_end[0] = time.perf_counter()

        if self.face_stream is not None and self._face is None:
            from xr_runtime.openxr.face_tracking import WearerFaceStream

            if session.face_tracker is None:
                log.warning("face stream %s: the runtime offers no face tracking (%s); nothing will be sent",
                            self.face_stream.stream_id, ", ".join(("XR_FB_face_tracking2", "XR_HTC_facial_tracking",
                                                            "XR_ANDROID_face_tracking")))
            self._face = WearerFaceStream(self.face_stream)

        def on_frame(info) -> None:
            if self._face is not None:
                self._face.on_frame(info)
            finish_pending()  # a frame whose views could not be located ends here
            now = time.perf_counter()
            wait_ms = (now - last_end[0]) * 1e3 if last_end[0] is not None else 0.0
            display = info.display_time_monotonic_ns
            if display is None:
                display = time.monotonic_ns() + info.predicted_display_period_ns
            frame = BackendFrame(info.index, display, info.predicted_display_period_ns, info.should_render,
                                 info.hands, wait_ms)
            if info.should_render:
                handler.begin_frame(frame)
                pending["frame"], pending["eyes"] = frame, 0
            else:
                last_end[0] = now

        closed = threading.Event()  # the user closed the mirror window

        def draw_eye(info, eye) -> None:
            frame = pending["frame"]
            if frame is None:
                return
            handler.draw_eye(frame, eye)
            if self.mirror is not None and eye.index == 0:
                self.mirror.capture(eye.target)  # before the image is released to the runtime
            pending["eyes"] += 1
            if pending["eyes"] == views:
                if self.mirror is not None and not self.mirror.present(restore=session.make_current):
                    closed.set()
                finish_pending()

        either = _AnyEvent(stop, closed)
        t0 = time.monotonic()
        xr_stats = session.run(draw_eye, max_frames=max_frames, stop=either, timeout_s=seconds, on_frame=on_frame)
        finish_pending()
        self._stats = BackendStats(self.name, frames=xr_stats.frames_rendered, views=xr_stats.views_rendered,
                            seconds=time.monotonic() - t0,
                            reason="lost" if xr_stats.lost else (xr_stats.reason or ("max frames" if max_frames else "")),
                            info={"runtime": f"{session.runtime_name} {session.runtime_version}",
                                  "states": list(xr_stats.states), "frames_waited": xr_stats.frames_waited,
                                  "space": session.space_name, "depth_layer": session.depth_enabled,
                                  "eye_size": [session.swapchains[0].width, session.swapchains[0].height],
                                  "graphics": session.graphics_kind, "graphics_reason": session.graphics_choice.reason,
                                  "gl_renderer": session.graphics.renderer,
                                  "samples": session.msaa.samples, "samples_reason": session.msaa.reason,
                                  "refresh_rate": (session.refresh_rate.state.as_dict()
                                                   if session.refresh_rate is not None else None),
                                  "mirror": getattr(self.mirror, "kind", "host-copy") if self.mirror else None,
                                  "face_tracking": (session.face_tracker.stats() if session.face_tracker is not None
                                                    else None)})
        return self._stats

    def close(self) -> None:
        if self._face is not None:
            self._face.close()
            self._face = None
        if self.mirror is not None and self.session is not None:
            self.session.make_current()
            self.mirror.close(restore=self.session.make_current)
            self.mirror = None
        if self.session is not None:
            self.session.close()  # request exit → STOPPING → EXITING, then destroy
            if self._stats is not None:
                self._stats.info["states"] = list(self.session.stats.states)
                self._stats.info["exited"] = self.session.stats.exited
            self.session = None
