"""Live Link Face (Epic's iPhone app) over UDP: the packet codec, the input adapter, the emitter.

One UDP datagram per frame, big-endian (the layout public deserialisers of the app read; port
11111 by default):

| field | type | meaning |
|---|---|---|
| version | u8 | 6 |
| device id | u32 length + UTF-8 | the phone's id |
| subject name | u32 length + UTF-8 | the Live Link subject |
| frame | i32 | frame number of the timecode |
| subframe | f32 | fraction of a frame |
| fps numerator | i32 | frame rate = numerator / denominator |
| fps denominator | i32 | |
| count | u8 | 61 |
| values | count × f32 | 52 ARKit weights (inference/features/expr52_names.py order), head yaw/pitch/roll, left eye yaw/pitch/roll, right eye yaw/pitch/roll (radians) |

Frame time in seconds = (frame + subframe) × denominator / numerator on the sender's clock
(timecode: wraps daily); the adapter maps it onto ours (``common.SourceClock``). The app sends no
confidences: every weight arrives with confidence 1. Malformed datagrams (any decoding failure,
wrong version, count, non-finite values) are counted by reason and skipped.
"""
from __future__ import annotations

import logging
import math
import socket
import struct
import threading
import time
from dataclasses import dataclass

import numpy as np

from core.errors import HeadcastError

from .common import AdapterStats, Expr52Stream, SourceClock, listen_udp, pose_from_ypr, ypr_from_pose

log = logging.getLogger(__name__)

VERSION = 6
COUNT = 61
DEFAULT_PORT = 11111
MAX_NAME_BYTES = 256
MAX_DATAGRAM = 4096


class LiveLinkError(HeadcastError, ValueError):
    """A datagram that is not a Live Link Face frame; ``reason`` says why."""

    def __init__(self, reason: str, detail: str = ""):
        self.reason = reason
        super().__init__(f"{reason}{': ' + detail if detail else ''}")


@dataclass(frozen=True)
class LiveLinkFrame:
    device_id: str
    subject: str
    frame: int
    subframe: float
    fps_num: int
    fps_den: int
    values: np.ndarray  # (61,) float32

    @property
    def weights(self) -> np.ndarray:
        return self.values[:52]

    @property
    def head_ypr(self) -> tuple[float, float, float]:
        return float(self.values[52]), float(self.values[53]), float(self.values[54])

    @property
    def time_s(self) -> float | None:
        if self.fps_num <= 0 or self.fps_den <= 0:
            return None
        return (self.frame + self.subframe) * self.fps_den / self.fps_num


def encode(f: LiveLinkFrame) -> bytes:
    dev, sub = f.device_id.encode("utf-8"), f.subject.encode("utf-8")
    vals = np.asarray(f.values, np.float32).reshape(-1)
    if len(vals) != COUNT:
        raise ValueError(f"Live Link Face carries {COUNT} values, got {len(vals)}")
    return b"".join([struct.pack(">B", VERSION), struct.pack(">I", len(dev)), dev, struct.pack(">I", len(sub)), sub,
                     struct.pack(">ifii", int(f.frame), float(f.subframe), int(f.fps_num), int(f.fps_den)),
                     struct.pack(">B", COUNT), vals.astype(">f4").tobytes()])


def decode(data: bytes) -> LiveLinkFrame:
    """Strict: any byte string gives a frame or a :class:`LiveLinkError`."""
    data = bytes(data)
    try:
        pos = 0

        def take(n: int) -> bytes:
            nonlocal pos
            if pos + n > len(data):
                raise LiveLinkError("truncated", f"needs {pos + n} bytes, has {len(data)}")
            out = data[pos:pos + n]
            pos += n
            return out

        (version,) = struct.unpack(">B", take(1))
        if version != VERSION:
            raise LiveLinkError("bad_version", str(version))
        names = []
        for what in ("device id", "subject"):
            (n,) = struct.unpack(">I", take(4))
            if n > MAX_NAME_BYTES:
                raise LiveLinkError("bad_name", f"{what} of {n} bytes")
            try:
                names.append(take(n).decode("utf-8"))
            except UnicodeDecodeError:
                raise LiveLinkError("bad_name", f"{what} is not UTF-8") from None
        frame, subframe, num, den = struct.unpack(">ifii", take(16))
        (count,) = struct.unpack(">B", take(1))
        if count != COUNT:
            raise LiveLinkError("bad_count", f"{count} values, expected {COUNT}")
        values = np.frombuffer(take(4 * count), ">f4").astype(np.float32)
        if pos != len(data):
            raise LiveLinkError("trailing_bytes", f"{len(data) - pos}")
        if not (np.isfinite(values).all() and math.isfinite(subframe)):
            raise LiveLinkError("bad_number", "non-finite value")
        return LiveLinkFrame(names[0], names[1], frame, subframe, num, den, values)
    except LiveLinkError:
        raise
    except Exception as exc:  # a codec bug still surfaces as one typed error, never kills the loop
        raise LiveLinkError("bad_packet", f"{type(exc).__name__}: {exc}") from exc


def frame_from_expr52(weights, pose=None, t_s: float = 0.0, fps: int = 60, subject: str = "headcast",
                      device_id: str = "headcast-capture") -> LiveLinkFrame:
    """What the capture node emits: weights (already × confidence) and the head pose as yaw/pitch/roll."""
    values = np.zeros(COUNT, np.float32)
    values[:52] = np.clip(np.asarray(weights, np.float32).reshape(52), 0.0, 1.0)
    if pose is not None:
        values[52:55] = ypr_from_pose(pose)
    frames = t_s * fps
    whole = math.floor(frames)
    return LiveLinkFrame(device_id, subject, int(whole) % (1 << 31), float(frames - whole), int(fps), 1, values)


class LiveLinkSender:
    """UDP emitter (``capture --emit-livelink HOST:PORT``): one datagram per frame, never blocks."""

    def __init__(self, host: str, port: int, subject: str = "headcast", fps: int = 60):
        self.addr = (host, int(port))
        self.subject, self.fps = subject, fps
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sent = self.dropped = 0

    def emit(self, weights, pose, t_capture_ns: int) -> None:
        data = encode(frame_from_expr52(weights, pose, t_capture_ns / 1e9, self.fps, self.subject))
        try:
            self.sock.sendto(data, self.addr)
            self.sent += 1
        except OSError:  # buffer full or nobody listening (ICMP): a dropped frame, not an error
            self.dropped += 1

    def close(self) -> None:
        self.sock.close()


class LiveLinkAdapter:
    """Listens for Live Link Face datagrams and publishes each as an ``expr52`` frame."""

    def __init__(self, host: str, port: int, stream: Expr52Stream, subject: str | None = None):
        self.stream = stream
        self.subject = subject  # None: any subject
        self.stats = AdapterStats()
        self.clock = SourceClock()
        self.sock = listen_udp(host, port, "Live Link Face", 0.1)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()

    def handle(self, data: bytes, arrival_ns: int | None = None) -> bool:
        """One datagram → one published frame (True) or a counted drop (False)."""
        arrival = time.monotonic_ns() if arrival_ns is None else arrival_ns
        self.stats.packets += 1
        try:
            f = decode(data)
        except LiveLinkError as exc:
            self.stats.bad(exc.reason)
            return False
        if self.subject is not None and f.subject != self.subject:
            self.stats.bad("other_subject")
            return False
        t = self.clock.map(f.time_s, arrival)
        self.stats.clock_resets = self.clock.resets
        ok = self.stream.publish(f.weights, None, t, pose_from_ypr(*f.head_ypr))
        self.stats.frames += 1
        self.stats.send_dropped += int(not ok)
        return True

    def run(self, seconds: float | None = None) -> AdapterStats:
        t_end = None if seconds is None else time.monotonic() + seconds
        while not self._stop.is_set() and (t_end is None or time.monotonic() < t_end):
            try:
                data, _ = self.sock.recvfrom(MAX_DATAGRAM)
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            self.handle(data)
        return self.stats

    def stop(self) -> None:
        self._stop.set()

    def close(self) -> None:
        self.sock.close()
