"""What every ecosystem adapter shares: head pose ⇄ yaw/pitch/roll, the source clock mapped onto
ours, counters, and publishing one ``expr52`` frame.

Head pose on our wire is the canonical-face → camera rotation (``streaming/protocol.HeadPose``); a
face looking straight into the camera is 180° about x. The ecosystem sends the head's rotation
*in its own frame* as yaw (about +y, up), pitch (about +x, the subject's left) and roll (about +z,
out of the face), radians, applied as R = Ry(yaw) · Rx(pitch) · Rz(roll). So the wire rotation is
R_flip · R, and the render node (which uses rotation relative to the stream's first frames) sees
exactly R's change. Signs as read from the packet; not checked against an iPhone here.
"""
from __future__ import annotations

import math
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from core.errors import HeadcastError
from geometry.rotations import quaternion_to_rotation, rotation_to_quaternion
from inference.features.expr52 import payload_from_weights
from streaming.protocol import FeatureFrame, FeatureKind, Flags, HeadPose

_FLIP = np.diag([1.0, -1.0, -1.0])  # 180° about x: canonical head frame → camera frame, frontal face


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def pose_from_ypr(yaw: float, pitch: float, roll: float) -> HeadPose:
    r = _FLIP @ _ry(yaw) @ _rx(pitch) @ _rz(roll)
    return HeadPose(rotation=rotation_to_quaternion(r))


def ypr_from_pose(pose: HeadPose) -> tuple[float, float, float]:
    """Inverse of ``pose_from_ypr`` (R = Ry·Rx·Rz decomposition; pitch in [-π/2, π/2])."""
    r = _FLIP.T @ quaternion_to_rotation(pose.rotation)
    pitch = math.asin(max(-1.0, min(1.0, -r[1, 2])))
    yaw = math.atan2(r[0, 2], r[2, 2])
    roll = math.atan2(r[1, 0], r[1, 1])
    return yaw, pitch, roll


class SourceClock:
    """Maps a sender's timestamps (seconds on its own clock) onto this host's monotonic ns.

    offset = min over recent packets of (arrival − source time): the packet that travelled fastest
    bounds the offset best (as NTP's minimum-delay filter). A source time that jumps by more than
    ``reset_after_s`` against the estimate (app restarted, timecode wrapped at midnight) resets it.
    Mapped times never lie after the packet's arrival."""

    def __init__(self, reset_after_s: float = 1.0):
        self.reset_after_ns = int(reset_after_s * 1e9)
        self._offset: int | None = None
        self.resets = 0

    def map(self, source_s: float | None, arrival_ns: int) -> int:
        if source_s is None or not math.isfinite(source_s):
            return arrival_ns
        src_ns = int(round(source_s * 1e9))
        candidate = arrival_ns - src_ns
        if self._offset is None or abs(candidate - self._offset) > self.reset_after_ns:
            if self._offset is not None:
                self.resets += 1
            self._offset = candidate
        else:
            self._offset = min(self._offset, candidate)
        return min(src_ns + self._offset, arrival_ns)


@dataclass
class AdapterStats:
    packets: int = 0
    frames: int = 0  # published
    malformed: int = 0
    malformed_by_reason: dict = field(default_factory=dict)
    send_dropped: int = 0
    clock_resets: int = 0

    def bad(self, reason: str) -> None:
        self.malformed += 1
        self.malformed_by_reason[reason] = self.malformed_by_reason.get(reason, 0) + 1

    def as_dict(self) -> dict:
        return {"packets": self.packets, "frames": self.frames, "malformed": self.malformed,
                "malformed_by_reason": dict(self.malformed_by_reason), "send_dropped": self.send_dropped,
                "clock_resets": self.clock_resets}


class Expr52Stream:
    """Publishes expr52 frames for one stream id through a ``streaming.publisher.Publisher``."""

    def __init__(self, publisher, stream_id: str):
        self.publisher = publisher
        self.stream_id = stream_id
        self.seq = 0
        self._lock = threading.Lock()

    def frame(self, weights, confidences, t_capture_ns: int, pose: HeadPose | None = None,
              confidence: float = 1.0) -> FeatureFrame:
        return FeatureFrame(self.stream_id, self.seq, FeatureKind.EXPR52, payload_from_weights(weights, confidences),
                            t_capture_ns=int(t_capture_ns), t_features_ns=time.monotonic_ns(),
                            pose=pose or HeadPose(), confidence=float(min(max(confidence, 0.0), 1.0)))

    def publish(self, weights, confidences, t_capture_ns: int, pose: HeadPose | None = None,
                confidence: float = 1.0) -> bool:
        with self._lock:
            ok = self.publisher.send(self.frame(weights, confidences, t_capture_ns, pose, confidence))
            self.seq += 1
            return ok

    def end(self) -> None:
        now = time.monotonic_ns()
        with self._lock:
            self.publisher.send(FeatureFrame(self.stream_id, self.seq, FeatureKind.NONE,
                                             np.zeros((0, 0), np.float32), now, now, confidence=0.0,
                                             flags=Flags.END_OF_STREAM))
            self.seq += 1


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (or ``:PORT``, or ``HOST`` with a default port) → (host, port); ValueError otherwise."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = str(text), "" if default_port is None else str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    try:
        p = int(port)
    except ValueError:
        raise ValueError(f"{text!r}: expected HOST:PORT") from None
    if not (0 <= p <= 65535):
        raise ValueError(f"{text!r}: port {p} out of range")
    return host, p


def is_loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def listen_udp(host: str, port: int, what: str, timeout_s: float) -> socket.socket:
    """A bound UDP socket for an adapter (``what`` names the format in the error), with a receive
    timeout so the adapter's loop sees ``stop`` in time; a port in use is a one-line error."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise HeadcastError(f"cannot listen for {what} on {host}:{port}: {exc.strerror or exc}") from exc
    sock.settimeout(timeout_s)
    return sock
