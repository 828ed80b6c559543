"""Raw video frames over ZeroMQ, newest only: the render node's view fed to a capture node as if
it were a camera (the glass-to-glass loop closed without a camera, `headcast bench glass`).

One single-part message per frame: a fixed little-endian header — magic ``HCV1``, width, height,
channels, the sender's frame index, the instant the frame is shown (sender's monotonic clock, ns)
— then the pixels, rows top-down, BGR (channels 3) or grey (1). Both ends use CONFLATE (a
subscriber only ever holds the newest frame), so a slow reader sees fresh frames, never a queue:
exactly the behaviour a webcam grabber thread has (capture/sources.LatestFrameGrabber).

Loopback only unless the caller allows otherwise: these are pictures of the scene.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np
import zmq

from core.errors import HeadcastError
from streaming.sockets import SocketOptions, open_socket

MAGIC = b"HCV1"
_HEADER = struct.Struct("<4sHHBxxxqq")   # magic, width, height, channels, pad, index, shown_ns
MAX_SIDE = 4096


class FrameFeedError(HeadcastError, ValueError):
    """A frame-feed message that is not a frame."""


@dataclass(frozen=True)
class FeedFrame:
    image: np.ndarray       # (H, W, C) uint8, rows top-down
    index: int
    shown_ns: int


def encode_frame(image: np.ndarray, index: int, shown_ns: int) -> bytes:
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 2:
        image = image[..., None]
    h, w, c = image.shape
    if c not in (1, 3) or not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise FrameFeedError(f"cannot send a {w}x{h}x{c} frame")
    return _HEADER.pack(MAGIC, w, h, c, int(index), int(shown_ns)) + image.tobytes()


def decode_frame(message: bytes) -> FeedFrame:
    if len(message) < _HEADER.size:
        raise FrameFeedError(f"frame message of {len(message)} bytes is shorter than its header")
    magic, w, h, c, index, shown = _HEADER.unpack_from(message)
    if magic != MAGIC or c not in (1, 3) or not (0 < w <= MAX_SIDE and 0 < h <= MAX_SIDE):
        raise FrameFeedError("not a frame-feed message")
    if len(message) != _HEADER.size + w * h * c:
        raise FrameFeedError(f"frame message of {len(message)} bytes does not hold {w}x{h}x{c} pixels")
    pixels = np.frombuffer(message, np.uint8, offset=_HEADER.size).reshape(h, w, c)
    return FeedFrame(pixels, index, shown)


class FrameFeedPublisher:
    """Binds `endpoint` and publishes frames; `send` never blocks (a frame nobody takes is dropped)."""

    def __init__(self, endpoint: str, insecure: bool = False) -> None:
        self._socket = open_socket(zmq.PUB, endpoint, bind=True, insecure=insecure,
                                   options=SocketOptions(sndhwm=1, conflate=True))
        self.endpoint = self._socket.endpoint
        self.sent = 0

    def send(self, image: np.ndarray, index: int, shown_ns: int) -> None:
        try:
            self._socket.sock.send(encode_frame(image, index, shown_ns), zmq.NOBLOCK)
            self.sent += 1
        except zmq.Again:
            pass

    def close(self) -> None:
        self._socket.close()


class FrameFeedSubscriber:
    """Connects to a frame feed; `receive(timeout_s)` gives the newest frame or None."""

    def __init__(self, endpoint: str) -> None:
        self._socket = open_socket(zmq.SUB, endpoint, bind=False,
                                   options=SocketOptions(rcvhwm=1, conflate=True, subscribe=b"",
                                                         maxmsgsize=_HEADER.size + MAX_SIDE * MAX_SIDE * 3))
        self.malformed = 0

    def receive(self, timeout_s: float) -> FeedFrame | None:
        if not self._socket.sock.poll(int(timeout_s * 1000)):
            return None
        try:
            return decode_frame(self._socket.sock.recv())
        except FrameFeedError:
            self.malformed += 1
            return None

    def close(self) -> None:
        self._socket.close()
