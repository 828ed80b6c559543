"""The spectator view as JPEG frames for the page, encoded on a thread of its own.

The render thread only ever calls `wants_frame` (a few attribute reads) and `offer` (a one-slot
mailbox put). This thread flips the rows, drops alpha, scales to the stream's size and encodes
(OpenCV's libjpeg-turbo; cv2 releases the GIL while it works, so the render thread keeps
running), then hands the bytes to the server, which sends each viewer the newest frame it has
not seen yet — a slow viewer skips frames instead of queueing them. A frame is only asked for
while somebody watches, at most `max_fps` a second, and never while the previous one is still
being encoded.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable

from xr_runtime.spectator.tap import LatestFrame, RateGate, SpectatorFrame

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FeedConfig:
    max_fps: float = 30.0
    max_width: int = 960            # frames wider than this are scaled down (aspect kept)
    jpeg_quality: int = 80


@dataclass(frozen=True)
class EncodedFrame:
    seq: int
    jpeg: bytes
    width: int
    height: int
    index: int                  # render frame index
    display_ns: int
    grabbed_ns: int
    collected_ns: int
    encoded_ns: int
    encode_ms: float


class JpegFeed:
    def __init__(self, config: FeedConfig = FeedConfig(), on_frame: Callable[[EncodedFrame], None] | None = None):
        self.config = config
        self.on_frame = on_frame
        self.viewers = 0            # set by the server (its thread); read by the render thread
        self._gate = RateGate(config.max_fps)
        self._mailbox = LatestFrame()
        self._busy = False
        self._seq = 0
        self.latest: EncodedFrame | None = None
        self.encode_ms: list[float] = []
        self.encoded = 0
        self._thread = threading.Thread(target=self._run, name="headcast-web-encoder", daemon=True)
        self._thread.start()

    # -------------------------------------------------- render thread
    def wants_frame(self, now_ns: int) -> bool:
        if self.viewers <= 0 or self._busy or not self._mailbox.empty or not self._gate.ready(now_ns):
            return False
        self._gate.taken(now_ns)
        return True

    def offer(self, frame: SpectatorFrame) -> None:
        self._busy = True
        self._mailbox.put(frame)

    # -------------------------------------------------- encoder thread
    def _run(self) -> None:
        import cv2

        while not self._mailbox.closed:
            frame = self._mailbox.get(timeout_s=0.5)
            if frame is None:
                continue
            try:
                t = time.perf_counter()
                encoded = self._encode(cv2, frame)
                ms = (time.perf_counter() - t) * 1e3
            except Exception as exc:  # the page loses a frame, never the render loop
                log.warning("spectator frame not encoded: %s", exc)
                continue
            finally:
                self._busy = False
            self.encode_ms.append(ms)
            if len(self.encode_ms) > 10_000:
                del self.encode_ms[:5_000]
            self.encoded += 1
            encoded = _with_encode_ms(encoded, ms)
            self.latest = encoded
            if self.on_frame is not None:
                self.on_frame(encoded)

    def _encode(self, cv2, frame: SpectatorFrame) -> EncodedFrame:
        image = frame.image_bottom_up
        bgr = cv2.cvtColor(image, cv2.COLOR_RGBA2BGR)
        bgr = cv2.flip(bgr, 0)               # GL rows are bottom-up
        h, w = bgr.shape[:2]
        if w > self.config.max_width:
            scale = self.config.max_width / w
            bgr = cv2.resize(bgr, (self.config.max_width, max(2, round(h * scale))), interpolation=cv2.INTER_AREA)
            h, w = bgr.shape[:2]
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.config.jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        self._seq += 1
        return EncodedFrame(self._seq, data.tobytes(), w, h, frame.index, frame.display_ns, frame.grabbed_ns,
                            frame.collected_ns, time.monotonic_ns(), 0.0)

    def close(self) -> None:
        self._mailbox.close()
        self._thread.join(timeout=2)

    def summary(self) -> dict:
        from core.percentiles import percentiles

        return {"encoded": self.encoded, "replaced_unencoded": self._mailbox.replaced,
                "encode_ms": percentiles(self.encode_ms), "max_fps": self.config.max_fps,
                "jpeg_quality": self.config.jpeg_quality}


def _with_encode_ms(frame: EncodedFrame, ms: float) -> EncodedFrame:
    from dataclasses import replace

    return replace(frame, encode_ms=ms)
