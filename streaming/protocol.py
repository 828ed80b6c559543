"""Wire format of one expression-feature frame (capture node → render node).

One ZeroMQ message per frame: two parts, ``[topic, body]``. The topic is the stream id (so SUB
sockets can filter by prefix); the body is a fixed little-endian header followed by the feature
payload. The decoder is strict: any byte string yields either a :class:`FeatureFrame` or a
:class:`ProtocolError` — never another exception — because network input is hostile.
"""
from __future__ import annotations

import enum
import re
import struct
from dataclasses import dataclass, field

import numpy as np

from core.errors import HeadcastError

MAGIC = b"HCF1"
# Version field: low byte = major, high byte = minor (docs/PROTOCOL.md, "Versioning"). 1.0 is the
# original layout; 1.1 added feature kind expr52. A writer stamps the lowest minor that knows the
# frame's kind, so streams an older 1.0 reader can decode still say 1.0.
VERSION_MAJOR = 1
VERSION_MINOR = 1
VERSION = VERSION_MAJOR  # the 1.0 stamp (kept for readers of this module's old name)

# Header layout (little-endian, no padding):
#   magic 4s, version H, header_size H, feature_kind H, dtype B, flags B,
#   dim0 I, dim1 I, stream_id 32s (utf-8, NUL padded), seq Q,
#   t_capture q, t_features q, t_send q,           (int64 ns, sender's monotonic clock)
#   rotation 4f (w, x, y, z), translation 3f, scale f, confidence f, payload_bytes I
_HEADER = struct.Struct("<4sHHHBBII32sQqqq4f3fffI")
HEADER_SIZE = _HEADER.size
# A newer minor version may append header fields: a reader decodes the fields it knows, skips the
# rest (the payload starts at header_size) and never trusts a header longer than this.
MAX_HEADER_SIZE = 1024

STREAM_ID_MAX = 32
_STREAM_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")
# 8192 float32 values covers deca2048 and mp478 (1434) with room to spare; anything larger is hostile.
MAX_PAYLOAD_BYTES = 8192 * 4
MAX_MESSAGE_BYTES = MAX_HEADER_SIZE + MAX_PAYLOAD_BYTES
_MAX_TIME_NS = 1 << 62


class FeatureKind(enum.IntEnum):
    NONE = 0  # control frames (e.g. end of stream) that carry no features
    MP478 = 1  # MediaPipe FaceMesh 478 points, aligned, neutral-subtracted, scale-normalised: (478, 3)
    DECA2048 = 2  # DECA's ResNet50 pooled features: (2048, 1)
    # The 52 ARKit blendshapes (inference/features/expr52_names.py order): (52, 2), [:, 0] weight in
    # [0, 1], [:, 1] its confidence in [0, 1]. Since protocol 1.1.
    EXPR52 = 3

    @property
    def label(self) -> str:
        return {0: "none", 1: "mp478", 2: "deca2048", 3: "expr52"}[int(self)]

    @classmethod
    def from_label(cls, label: str) -> "FeatureKind":
        for kind in cls:
            if kind.label == label:
                return kind
        raise ValueError(f"unknown feature kind {label!r} (known: mp478, deca2048, expr52)")


# Shapes each kind must have; the decoder rejects anything else.
FEATURE_SHAPES: dict[FeatureKind, tuple[int, int]] = {
    FeatureKind.NONE: (0, 0),
    FeatureKind.MP478: (478, 3),
    FeatureKind.DECA2048: (2048, 1),
    FeatureKind.EXPR52: (52, 2),
}
# The minor version that introduced each kind (what a writer stamps; see VERSION_MAJOR).
KIND_MINOR: dict[FeatureKind, int] = {FeatureKind.NONE: 0, FeatureKind.MP478: 0, FeatureKind.DECA2048: 0,
                                      FeatureKind.EXPR52: 1}


def version_field(major: int, minor: int) -> int:
    return (int(major) & 0xFF) | ((int(minor) & 0xFF) << 8)


class Dtype(enum.IntEnum):
    FLOAT16 = 1
    FLOAT32 = 2

    @property
    def numpy(self) -> np.dtype:
        return np.dtype("<f2") if self is Dtype.FLOAT16 else np.dtype("<f4")


class Flags(enum.IntFlag):
    NONE = 0
    FACE_LOST = 1
    CALIBRATING = 2  # neutral face still being estimated online
    END_OF_STREAM = 4
    NEUTRAL_ESTIMATED = 8  # neutral came from online estimation, not a calibration file


_KNOWN_FLAGS = int(Flags.FACE_LOST | Flags.CALIBRATING | Flags.END_OF_STREAM | Flags.NEUTRAL_ESTIMATED)


class ProtocolErrorKind(enum.Enum):
    WRONG_PART_COUNT = "wrong number of message parts"
    TOO_SHORT = "shorter than the header"
    TOO_LONG = "longer than the maximum message size"
    BAD_MAGIC = "bad magic"
    BAD_VERSION = "unsupported protocol version"
    BAD_HEADER_SIZE = "header size field does not match"
    BAD_KIND = "unknown feature kind"
    BAD_DTYPE = "unknown dtype"
    BAD_FLAGS = "unknown flag bits"
    BAD_SHAPE = "feature shape does not match its kind"
    BAD_LENGTH = "payload length does not match header"
    BAD_STREAM_ID = "invalid stream id"
    TOPIC_MISMATCH = "topic does not match the header's stream id"
    BAD_NUMBER = "non-finite or out-of-range number"


class ProtocolError(HeadcastError, ValueError):
    """The one error the decoder raises; ``kind`` says what was wrong."""

    def __init__(self, kind: ProtocolErrorKind, detail: str = ""):
        self.kind = kind
        self.detail = detail
        super().__init__(f"{kind.value}{': ' + detail if detail else ''}")


def validate_stream_id(stream_id: str) -> str:
    if not isinstance(stream_id, str) or not _STREAM_ID_RE.match(stream_id):
        raise ValueError(
            f"stream id {stream_id!r} must be 1-{STREAM_ID_MAX} characters of A-Z a-z 0-9 _ . -"
        )
    return stream_id


@dataclass(frozen=True)
class HeadPose:
    """Rigid similarity from the canonical face frame to the camera frame (the tracker's pose)."""

    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # quaternion w, x, y, z
    translation: tuple[float, float, float] = (0.0, 0.0, 0.0)
    scale: float = 1.0


@dataclass(frozen=True)
class FeatureFrame:
    stream_id: str
    seq: int
    kind: FeatureKind
    features: np.ndarray  # shape FEATURE_SHAPES[kind], float16 or float32, read-only
    t_capture_ns: int
    t_features_ns: int
    t_send_ns: int = 0
    pose: HeadPose = field(default_factory=HeadPose)
    confidence: float = 1.0
    flags: Flags = Flags.NONE

    @property
    def face_lost(self) -> bool:
        return bool(self.flags & Flags.FACE_LOST)

    @property
    def end_of_stream(self) -> bool:
        return bool(self.flags & Flags.END_OF_STREAM)


def encode(frame: FeatureFrame, t_send_ns: int | None = None) -> list[bytes]:
    """Returns the two message parts ``[topic, body]``. ``t_send_ns`` overrides the frame's."""
    validate_stream_id(frame.stream_id)
    shape = FEATURE_SHAPES[FeatureKind(frame.kind)]
    feats = np.asarray(frame.features)
    if feats.dtype == np.float16:
        dtype = Dtype.FLOAT16
    elif feats.dtype == np.float32:
        dtype = Dtype.FLOAT32
    else:
        raise ValueError(f"features must be float16 or float32, got {feats.dtype}")
    if feats.size != shape[0] * shape[1]:
        raise ValueError(f"features for {FeatureKind(frame.kind).label} must have shape {shape}, got {feats.shape}")
    payload = np.ascontiguousarray(feats, dtype=dtype.numpy).tobytes()
    sid = frame.stream_id.encode("utf-8")
    t_send = frame.t_send_ns if t_send_ns is None else t_send_ns
    header = _HEADER.pack(
        MAGIC, version_field(VERSION_MAJOR, KIND_MINOR[FeatureKind(frame.kind)]), HEADER_SIZE, int(frame.kind), int(dtype), int(frame.flags),
        shape[0], shape[1], sid, int(frame.seq),
        int(frame.t_capture_ns), int(frame.t_features_ns), int(t_send),
        *frame.pose.rotation, *frame.pose.translation, frame.pose.scale,
        float(frame.confidence), len(payload),
    )
    return [sid, header + payload]


_FRAMING = struct.Struct("<4sHHHBBII32s")   # the header's leading fields, up to the stream id
_NBYTES_OFFSET = HEADER_SIZE - 4              # payload_bytes: the last field every 1.x header has
# Headers of a newer minor version may be longer (extra fields before the payload); the relay
# forwards any minor of its major and any header size up to this, as the versioned decoder reads them.
_FRAMING_MAX_HEADER = 1024


def check_framing(topic: bytes, body) -> None:
    """The relay's per-message check: the header's framing (magic, major version, header size, kind,
    dtype, shape, payload length) is right and its stream id equals the topic — without touching
    the payload, so a room forwards a frame in a few microseconds. Receivers still run `decode`.
    Raises only `ProtocolError`."""
    n = len(body)
    if n < HEADER_SIZE:
        raise ProtocolError(ProtocolErrorKind.TOO_SHORT, f"{n} < {HEADER_SIZE} bytes")
    if n > _FRAMING_MAX_HEADER + MAX_PAYLOAD_BYTES:
        raise ProtocolError(ProtocolErrorKind.TOO_LONG, f"{n} bytes")
    magic, version, header_size, kind, dtype, _flags, d0, d1, sid_raw = _FRAMING.unpack_from(body)
    if magic != MAGIC or (version & 0xFF) != (VERSION & 0xFF) or not HEADER_SIZE <= header_size <= _FRAMING_MAX_HEADER:
        raise ProtocolError(ProtocolErrorKind.BAD_MAGIC, "framing")
    try:
        shape = FEATURE_SHAPES[FeatureKind(kind)]
        itemsize = Dtype(dtype).numpy.itemsize
    except (ValueError, KeyError):
        raise ProtocolError(ProtocolErrorKind.BAD_KIND, f"kind {kind} dtype {dtype}") from None
    if (d0, d1) != shape:
        raise ProtocolError(ProtocolErrorKind.BAD_SHAPE, f"{(d0, d1)}")
    expected = d0 * d1 * itemsize
    if n != header_size + expected or struct.unpack_from("<I", body, _NBYTES_OFFSET)[0] != expected:
        raise ProtocolError(ProtocolErrorKind.BAD_LENGTH, f"body {n}, header + shape need {header_size + expected}")
    if sid_raw.rstrip(b"\0") != topic or not topic:
        raise ProtocolError(ProtocolErrorKind.TOPIC_MISMATCH, f"topic {bytes(topic[:40])!r}")


def decode(parts: list[bytes] | tuple[bytes, ...]) -> FeatureFrame:
    """Strictly decodes ``[topic, body]``; raises only :class:`ProtocolError`."""
    try:
        return _decode(parts)
    except ProtocolError:
        raise
    except Exception as exc:  # a decoder bug must still surface as a protocol error, not kill a loop
        raise ProtocolError(ProtocolErrorKind.BAD_NUMBER, f"{type(exc).__name__}: {exc}") from exc


def _decode(parts) -> FeatureFrame:
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ProtocolError(ProtocolErrorKind.WRONG_PART_COUNT, f"expected 2, got {len(parts) if isinstance(parts, (list, tuple)) else type(parts).__name__}")
    topic, body = (bytes(p) for p in parts)
    if len(body) < HEADER_SIZE:
        raise ProtocolError(ProtocolErrorKind.TOO_SHORT, f"{len(body)} < {HEADER_SIZE} bytes")
    if len(body) > MAX_MESSAGE_BYTES:
        raise ProtocolError(ProtocolErrorKind.TOO_LONG, f"{len(body)} > {MAX_MESSAGE_BYTES} bytes")
    (magic, version, header_size, kind, dtype, flags, d0, d1, sid_raw, seq,
     t_cap, t_feat, t_send, qw, qx, qy, qz, tx, ty, tz, scale, conf, nbytes) = _HEADER.unpack_from(body)
    if magic != MAGIC:
        raise ProtocolError(ProtocolErrorKind.BAD_MAGIC, repr(magic))
    major, minor = version & 0xFF, version >> 8
    if major != VERSION_MAJOR:
        raise ProtocolError(ProtocolErrorKind.BAD_VERSION,
                            f"got {major}.{minor}, this build speaks {VERSION_MAJOR}.{VERSION_MINOR}")
    # Versioning rule: any minor of our major is read. A longer header (a newer minor's extra
    # fields) is skipped; a shorter one cannot hold the fields every 1.x header has.
    if not (HEADER_SIZE <= header_size <= MAX_HEADER_SIZE) or header_size > len(body):
        raise ProtocolError(ProtocolErrorKind.BAD_HEADER_SIZE,
                            f"{header_size} (must be {HEADER_SIZE}..{MAX_HEADER_SIZE} and within the body)")
    try:
        fkind = FeatureKind(kind)
    except ValueError:
        raise ProtocolError(ProtocolErrorKind.BAD_KIND, str(kind)) from None
    try:
        fdtype = Dtype(dtype)
    except ValueError:
        raise ProtocolError(ProtocolErrorKind.BAD_DTYPE, str(dtype)) from None
    if flags & ~_KNOWN_FLAGS:
        raise ProtocolError(ProtocolErrorKind.BAD_FLAGS, hex(flags))
    if (d0, d1) != FEATURE_SHAPES[fkind]:
        raise ProtocolError(ProtocolErrorKind.BAD_SHAPE, f"{fkind.label} must be {FEATURE_SHAPES[fkind]}, got {(d0, d1)}")
    expected = d0 * d1 * fdtype.numpy.itemsize
    if nbytes != expected or len(body) != header_size + expected:
        raise ProtocolError(ProtocolErrorKind.BAD_LENGTH, f"header says {nbytes}, shape needs {expected}, body has {len(body) - header_size}")
    sid_bytes = sid_raw.rstrip(b"\0")
    try:
        sid = sid_bytes.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(ProtocolErrorKind.BAD_STREAM_ID, repr(sid_bytes)) from None
    if b"\0" in sid_bytes or not _STREAM_ID_RE.match(sid):
        raise ProtocolError(ProtocolErrorKind.BAD_STREAM_ID, repr(sid_bytes))
    if topic != sid_bytes:
        raise ProtocolError(ProtocolErrorKind.TOPIC_MISMATCH, f"topic {topic[:40]!r}, header {sid!r}")
    floats = np.array([qw, qx, qy, qz, tx, ty, tz, scale, conf], dtype=np.float64)
    if not np.all(np.isfinite(floats)) or not (0.0 <= conf <= 1.0):
        raise ProtocolError(ProtocolErrorKind.BAD_NUMBER, "pose or confidence")
    for t in (t_cap, t_feat, t_send):
        if not (0 <= t < _MAX_TIME_NS):
            raise ProtocolError(ProtocolErrorKind.BAD_NUMBER, f"timestamp {t}")
    features = np.frombuffer(body, dtype=fdtype.numpy, count=d0 * d1, offset=header_size).reshape(d0, d1)
    if features.size and not np.isfinite(features).all():
        raise ProtocolError(ProtocolErrorKind.BAD_NUMBER, "non-finite feature value")
    if fkind is FeatureKind.EXPR52 and ((features < 0).any() or (features > 1).any()):
        raise ProtocolError(ProtocolErrorKind.BAD_NUMBER, "expr52 weights and confidences must lie in [0, 1]")
    return FeatureFrame(
        stream_id=sid, seq=seq, kind=fkind, features=features,
        t_capture_ns=t_cap, t_features_ns=t_feat, t_send_ns=t_send,
        pose=HeadPose((qw, qx, qy, qz), (tx, ty, tz), scale),
        confidence=conf, flags=Flags(flags),
    )
