"""The spectator view as a system camera (`headcast render --virtual-camera`), so the avatar can
join any video call: v4l2loopback on Linux, the OBS virtual camera on Windows and macOS, through
pyvirtualcam.

A camera must deliver a steady stream at its own rate whatever the render loop does, so the
camera has its own thread, paced by pyvirtualcam's `sleep_until_next_frame`: each tick it sends
the newest spectator frame (flipped, alpha dropped, letterboxed into the camera's size), or
repeats the last one when the render loop had nothing new (counted). The render thread only
hands frames over through a one-slot mailbox, and is asked for one at most at the camera's rate.

What has run where: the format conversion and the pacing are tested against pyvirtualcam's own
`Camera` front end with a recording backend registered through its `register_backend` (CI has no
loopback device); opening a real v4l2loopback or OBS device has not run here. Without a device
the command fails at start with `VirtualCameraUnavailable`, naming what to load.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

import numpy as np

from core.errors import BackendUnavailable
from xr_runtime.spectator.tap import LatestFrame, RateGate, SpectatorFrame

log = logging.getLogger(__name__)

SETUP_HINT = ("on Linux load a loopback device first: sudo modprobe v4l2loopback devices=1 exclusive_caps=1 "
              "card_label=Headcast; on Windows/macOS install OBS Studio and start its virtual camera once")


class VirtualCameraUnavailable(BackendUnavailable):
    """No virtual camera device (or pyvirtualcam) on this machine."""


@dataclass(frozen=True)
class VirtualCameraConfig:
    width: int = 1280
    height: int = 720
    fps: float = 30.0
    device: str | None = None       # e.g. /dev/video10; None: the first loopback device
    backend: str | None = None      # a pyvirtualcam backend name; None: every one this platform has


def letterbox(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """Scales an (h, w, 3) image to fit (height, width, 3), aspect kept, black bars around."""
    import cv2

    h, w = rgb.shape[:2]
    scale = min(width / w, height / h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - nw) // 2, (height - nh) // 2
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(rgb, (nw, nh), interpolation=interpolation) if (nw, nh) != (w, h) else rgb
    return out


def camera_frame(frame: SpectatorFrame, width: int, height: int) -> np.ndarray:
    """A spectator frame (RGBA, GL rows bottom-up) as the camera's RGB frame, top row first."""
    rgb = np.ascontiguousarray(frame.image_bottom_up[::-1, :, :3])
    return letterbox(rgb, width, height)


class VirtualCameraFeed:
    def __init__(self, config: VirtualCameraConfig = VirtualCameraConfig()) -> None:
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise VirtualCameraUnavailable(f"--virtual-camera needs pyvirtualcam (pip install "
                                           f"'headcast[camera]'): {exc}") from exc
        self.config = config
        try:
            self._camera = pyvirtualcam.Camera(config.width, config.height, config.fps,
                                               fmt=pyvirtualcam.PixelFormat.RGB, device=config.device,
                                               backend=config.backend)
        except Exception as exc:  # pyvirtualcam raises RuntimeError listing each backend's reason
            where = config.device or "any device"
            raise VirtualCameraUnavailable(f"no virtual camera ({where}): {str(exc).strip()} — {SETUP_HINT}") from exc
        self.device_name = self._camera.device
        self._mailbox = LatestFrame()
        self._gate = RateGate(config.fps)
        self._last = np.zeros((config.height, config.width, 3), np.uint8)
        self.sent = 0
        self.fresh = 0
        self.repeated = 0
        self.send_times_ns: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="headcast-virtual-camera", daemon=True)
        self._thread.start()

    # -------------------------------------------------- render thread
    def wants_frame(self, now_ns: int) -> bool:
        if not self._mailbox.empty or not self._gate.ready(now_ns):
            return False
        self._gate.taken(now_ns)
        return True

    def offer(self, frame: SpectatorFrame) -> None:
        self._mailbox.put(frame)

    # -------------------------------------------------- camera thread
    def _run(self) -> None:
        c = self.config
        while not self._stop.is_set():
            frame = self._mailbox.get(timeout_s=0)
            if frame is not None:
                try:
                    self._last = camera_frame(frame, c.width, c.height)
                    self.fresh += 1
                except Exception as exc:  # a bad frame is skipped; the camera keeps its last picture
                    log.warning("virtual camera frame not converted: %s", exc)
            else:
                self.repeated += self.sent > 0
            try:
                self._camera.send(self._last)
            except Exception as exc:
                log.warning("virtual camera stopped: %s", exc)
                return
            self.sent += 1
            if len(self.send_times_ns) < 100_000:
                self.send_times_ns.append(time.monotonic_ns())
            self._camera.sleep_until_next_frame()

    def close(self) -> None:
        self._stop.set()
        self._mailbox.close()
        self._thread.join(timeout=2)
        self._camera.close()

    def summary(self) -> dict:
        from core.percentiles import percentiles

        intervals = np.diff(np.asarray(self.send_times_ns, dtype=np.int64)) / 1e6
        return {"device": self.device_name, "size": [self.config.width, self.config.height],
                "fps": self.config.fps, "sent": self.sent, "fresh": self.fresh, "repeated": self.repeated,
                "interval_ms": percentiles(intervals.tolist())}
