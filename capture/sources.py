"""Frame sources for the capture node: video files, image directories, cameras, frame feeds.

Every source yields :class:`CapturedFrame` (BGR uint8 image, monotonic capture time in ns, how
long decoding took). Files run as fast as possible or, with ``realtime``, paced at their frame rate.
Cameras use a grabber thread that keeps only the newest frame: a slow consumer skips frames
(counted) instead of reading ever older ones out of a queue, which is where webcam trackers usually
lose 50-150 ms.

Bad input fails loudly with :class:`SourceError`: missing files, files OpenCV cannot open,
videos that end well before the frame count their container announces (truncated or corrupt),
unreadable images, cameras that do not open.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np

from core.errors import HeadcastError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
# A video may legitimately deliver a few frames fewer than its container header says (the
# project's own no_face.mp4 announces 98 and decodes 95): up to this many, or this share of the
# announced count, is a warning (counted in `missing_frames`); more means the file is truncated.
TRUNCATION_TOLERANCE_FRAMES = 5
TRUNCATION_TOLERANCE_SHARE = 0.05


class SourceError(HeadcastError, RuntimeError):
    """The source cannot deliver frames; the message names the source and the reason."""


@dataclass(frozen=True)
class CapturedFrame:
    image: np.ndarray  # HxWx3 uint8 BGR
    t_capture_ns: int  # time.monotonic_ns() when the frame became available to us
    index: int  # 0-based count of frames delivered by this source
    decode_ms: float  # time spent reading/decoding this frame


@dataclass(frozen=True)
class SourceConfig:
    spec: str  # camera index ("0"), video file, or image directory
    realtime: bool = False  # pace files at their frame rate (cameras are always live)
    loop: bool = False  # restart files at their end
    max_frames: int | None = None  # stop after this many frames in total
    fps: float | None = None  # override the pacing rate (image directories default to 30)
    camera_width: int | None = None
    camera_height: int | None = None


class FrameSource:
    """Base class: iterate to get frames; ``close`` releases the device or file."""

    missing_frames = 0  # frames the source announced but could not deliver (a video's short tail)

    description = "source"
    fps: float = 0.0
    skipped = 0  # frames a live source discarded because a newer one was ready

    def __iter__(self) -> Iterator[CapturedFrame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _Pacer:
    """Sleeps so frame i is handed out no earlier than start + i / fps (no drift accumulates)."""

    def __init__(self, fps: float | None):
        self.period_ns = int(1e9 / fps) if fps and fps > 0 else 0
        self.start_ns: int | None = None
        self.count = 0

    def wait(self) -> None:
        if not self.period_ns:
            return
        now = time.monotonic_ns()
        if self.start_ns is None:
            self.start_ns = now
        due = self.start_ns + self.count * self.period_ns
        if due > now:
            time.sleep((due - now) / 1e9)
        elif now - due > self.period_ns:
            # More than a frame behind (a slow first frame, a stall): re-anchor instead of bursting
            # the backlog out, as a camera would deliver its next frame one period later too.
            self.start_ns = now - self.count * self.period_ns
        self.count += 1


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise SourceError(f"{what} {path} does not exist")
    if not os.access(path, os.R_OK):
        raise SourceError(f"{what} {path} is not readable (permissions)")


class VideoFileSource(FrameSource):
    def __init__(self, path: Path, config: SourceConfig):
        self.path = Path(path)
        self.config = config
        _check_file(self.path, "video file")
        if self.path.is_dir():
            raise SourceError(f"{self.path} is a directory, not a video file")
        self._cap = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            raise SourceError(
                f"cannot open video {self.path}: not a video OpenCV can decode, or the file is "
                "truncated/corrupt (e.g. its index is missing)"
            )
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 0.0
        if not (0 < self.fps < 1000):
            self.fps = 30.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frame_count = int(count) if count and count > 0 else None
        self.description = f"video {self.path.name} ({self.frame_count or '?'} frames @ {self.fps:.2f} fps)"

    def __iter__(self) -> Iterator[CapturedFrame]:
        cfg = self.config
        pacer = _Pacer((cfg.fps or self.fps) if cfg.realtime else None)
        delivered = 0
        while True:
            in_pass = 0
            while cfg.max_frames is None or delivered < cfg.max_frames:
                pacer.wait()
                t0 = time.perf_counter_ns()
                ok, img = self._cap.read()
                t1 = time.perf_counter_ns()
                if not ok or img is None:
                    break
                yield CapturedFrame(img, time.monotonic_ns(), delivered, (t1 - t0) / 1e6)
                delivered += 1
                in_pass += 1
            else:
                return  # max_frames reached
            self._check_complete(in_pass)
            if not cfg.loop:
                return
            if in_pass == 0:
                raise SourceError(f"video {self.path} delivered no frames")
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _check_complete(self, frames_read: int) -> None:
        if frames_read == 0:
            raise SourceError(f"video {self.path} opened but no frame could be decoded (corrupt file?)")
        missing = (self.frame_count or 0) - frames_read
        if missing <= 0:
            return
        if missing > max(TRUNCATION_TOLERANCE_FRAMES, TRUNCATION_TOLERANCE_SHARE * self.frame_count):
            raise SourceError(
                f"video {self.path} ended after {frames_read} of {self.frame_count} frames: "
                "the file is truncated or corrupt"
            )
        if missing != self.missing_frames:
            log.warning("video %s: %d of the %d frames its header announces did not decode (the last ones); "
                        "streamed the %d that did", self.path.name, missing, self.frame_count, frames_read)
        self.missing_frames = missing

    def close(self) -> None:
        self._cap.release()


class ImageDirSource(FrameSource):
    def __init__(self, path: Path, config: SourceConfig):
        self.path = Path(path)
        self.config = config
        _check_file(self.path, "image directory")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if not self.files:
            raise SourceError(f"image directory {self.path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
        self.fps = config.fps or 30.0
        self.description = f"images in {self.path} ({len(self.files)} files)"

    def __iter__(self) -> Iterator[CapturedFrame]:
        cfg = self.config
        pacer = _Pacer(self.fps if cfg.realtime else None)
        delivered = 0
        while True:
            for f in self.files:
                if cfg.max_frames is not None and delivered >= cfg.max_frames:
                    return
                pacer.wait()
                t0 = time.perf_counter_ns()
                img = cv2.imread(str(f), cv2.IMREAD_COLOR)
                t1 = time.perf_counter_ns()
                if img is None:
                    raise SourceError(f"cannot decode image {f} (corrupt or not an image)")
                yield CapturedFrame(img, time.monotonic_ns(), delivered, (t1 - t0) / 1e6)
                delivered += 1
            if not cfg.loop:
                return


class LatestFrameGrabber:
    """Pulls frames on its own thread and keeps only the newest one.

    ``grab()`` blocks until the device has a frame (False: the device ended); ``retrieve()``
    decodes it into (ok, image). The capture time is taken when ``grab`` returns, i.e. when the
    frame arrived, so time spent waiting for the device never counts as decode time. ``get``
    blocks until a frame newer than the last one handed out exists, so the consumer never sees the
    same frame twice and never an old one; frames overwritten unseen are counted in ``skipped``.
    """

    def __init__(self, grab: Callable[[], bool], retrieve: Callable[[], tuple[bool, np.ndarray | None]],
                 name: str = "grabber"):
        self._grab = grab
        self._retrieve = retrieve
        self._cond = threading.Condition()
        self._latest: tuple[np.ndarray, int, float] | None = None
        self._seq = 0  # frames grabbed
        self._taken_seq = 0  # seq of the last frame handed out
        self.skipped = 0
        self._stop = False
        self._ended = False
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"headcast-{name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop:
                if not self._grab():
                    break
                t_cap = time.monotonic_ns()
                t0 = time.perf_counter_ns()
                ok, img = self._retrieve()
                decode_ms = (time.perf_counter_ns() - t0) / 1e6
                if not ok or img is None:
                    break
                with self._cond:
                    if self._latest is not None and self._taken_seq < self._seq:
                        self.skipped += 1  # the previous frame was never taken: it was stale
                    self._latest = (img, t_cap, decode_ms)
                    self._seq += 1
                    self._cond.notify_all()
        except BaseException as exc:  # surfaced to the consumer in get()
            self._error = exc
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def get(self, timeout_s: float = 5.0) -> tuple[np.ndarray, int, float] | None:
        """Newest unseen (image, t_capture_ns, decode_ms); None when the device stopped delivering."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._taken_seq >= self._seq:
                if self._ended or self._stop:
                    if self._error is not None:
                        raise SourceError(f"frame grabber failed: {self._error}") from self._error
                    return None
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SourceError(f"no frame for {timeout_s:.1f} s (device stalled or disconnected)")
                self._cond.wait(left)
            self._taken_seq = self._seq
            return self._latest

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=2.0)


class CameraSource(FrameSource):
    def __init__(self, index: int, config: SourceConfig):
        self.index = index
        self.config = config
        dev = Path(f"/dev/video{index}")
        if os.name == "posix" and Path("/dev").is_dir() and not dev.exists():
            raise SourceError(f"camera {index} not found: {dev} does not exist (list cameras with: ls /dev/video*)")
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"camera {index} could not be opened (busy, no permission, or not a capture device)")
        # The smallest driver buffer: together with the grabber thread no stale frame waits anywhere.
        self._cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if config.camera_width:
            self._cap.set(cv2.CAP_PROP_FRAME_WIDTH, config.camera_width)
        if config.camera_height:
            self._cap.set(cv2.CAP_PROP_FRAME_HEIGHT, config.camera_height)
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or 30.0
        self.description = f"camera {index}"
        self._grabber = LatestFrameGrabber(self._cap.grab, self._cap.retrieve, name=f"camera{index}")

    @property
    def skipped(self) -> int:  # type: ignore[override]
        return self._grabber.skipped

    def __iter__(self) -> Iterator[CapturedFrame]:
        delivered = 0
        while self.config.max_frames is None or delivered < self.config.max_frames:
            got = self._grabber.get()
            if got is None:
                return
            img, t_cap, decode_ms = got
            yield CapturedFrame(img, t_cap, delivered, decode_ms)
            delivered += 1

    def close(self) -> None:
        self._grabber.stop()
        self._cap.release()


class FrameFeedSource(FrameSource):
    """Frames another process publishes (`streaming.frame_feed`, e.g. the render node's view for
    `headcast bench glass` without a camera) taken like a camera's: the newest one, stamped when it
    arrives. Ends when none arrives for `idle_timeout_s`."""

    def __init__(self, endpoint: str, config: SourceConfig, idle_timeout_s: float = 5.0):
        from streaming.frame_feed import FrameFeedSubscriber

        self.config = config
        self.description = f"frame feed {endpoint}"
        self.fps = config.fps or 60.0
        self._idle_timeout_s = idle_timeout_s
        try:
            self._feed = FrameFeedSubscriber(endpoint)
        except HeadcastError as exc:
            raise SourceError(f"frame feed {endpoint}: {exc}") from exc

    def __iter__(self) -> Iterator[CapturedFrame]:
        delivered, last = 0, None
        while self.config.max_frames is None or delivered < self.config.max_frames:
            got = self._feed.receive(self._idle_timeout_s)
            if got is None:
                return
            t_cap = time.monotonic_ns()
            if last is not None and got.index > last + 1:
                self.skipped += got.index - last - 1
            last = got.index
            image = got.image if got.image.shape[2] == 3 else np.repeat(got.image, 3, axis=2)
            yield CapturedFrame(image, t_cap, delivered, 0.0)
            delivered += 1

    def close(self) -> None:
        self._feed.close()


def open_source(config: SourceConfig) -> FrameSource:
    """Camera index (all digits), ``feed:ENDPOINT`` (frames another process publishes), image
    directory, or video file, by what ``spec`` looks like."""
    spec = str(config.spec).strip()
    if not spec:
        raise SourceError("empty source (give a camera index, a video file or an image directory)")
    if config.max_frames is not None and config.max_frames < 1:
        raise SourceError("--frames must be at least 1")
    if spec.isdigit():
        return CameraSource(int(spec), config)
    if spec.startswith("feed:"):
        return FrameFeedSource(spec[len("feed:"):], config)
    path = Path(spec).expanduser()
    if path.is_dir():
        return ImageDirSource(path, config)
    return VideoFileSource(path, config)
