"""A Headcast stream reader written from docs/PROTOCOL.md alone: `struct` and `zmq`, nothing of
Headcast's. Used by tests/test_protocol_doc.py to show the document is enough."""
from __future__ import annotations

import math
import re
import struct

import zmq

HEADER = struct.Struct("<4sHHHBBII32sQqqq4f3fffI")  # the field table, offsets 0..123
KIND_SHAPES = {0: (0, 0), 1: (478, 3), 2: (2048, 1), 3: (52, 2)}
KIND_NAMES = {0: "none", 1: "mp478", 2: "deca2048", 3: "expr52"}
DTYPES = {1: ("e", 2), 2: ("f", 4)}
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}$")


class Refused(Exception):
    pass


def read(parts) -> dict:
    """One message → a dict of its fields and values, or Refused (the document's refusal list)."""
    if len(parts) != 2:
        raise Refused("parts")
    topic, body = bytes(parts[0]), bytes(parts[1])
    if len(body) < 124 or len(body) > 1024 + 32768:
        raise Refused("length")
    (magic, version, header_size, kind, dtype, flags, d0, d1, sid, seq, t_cap, t_feat, t_send,
     qw, qx, qy, qz, tx, ty, tz, scale, conf, nbytes) = HEADER.unpack_from(body)
    major, minor = version & 0xFF, version >> 8
    if magic != b"HCF1" or major != 1:
        raise Refused("magic/version")
    if not 124 <= header_size <= 1024:
        raise Refused("header_size")
    if kind not in KIND_SHAPES or dtype not in DTYPES or flags & ~0xF:
        raise Refused("kind/dtype/flags")
    if (d0, d1) != KIND_SHAPES[kind]:
        raise Refused("shape")
    code, size = DTYPES[dtype]
    if nbytes != d0 * d1 * size or len(body) != header_size + nbytes:
        raise Refused("payload length")
    stream_id = sid.rstrip(b"\0").decode("utf-8")
    if not ID_RE.match(stream_id) or topic != stream_id.encode():
        raise Refused("stream id / topic")
    numbers = (qw, qx, qy, qz, tx, ty, tz, scale, conf)
    if not all(math.isfinite(v) for v in numbers) or not 0 <= conf <= 1:
        raise Refused("pose/confidence")
    if not all(0 <= t < 2 ** 62 for t in (t_cap, t_feat, t_send)):
        raise Refused("time")
    values = struct.unpack_from(f"<{d0 * d1}{code}", body, header_size)  # skip any newer header fields
    if not all(math.isfinite(v) for v in values):
        raise Refused("values")
    rows = [values[i * d1:(i + 1) * d1] for i in range(d0)]
    if kind == 3 and any(not 0 <= v <= 1 for v in values):
        raise Refused("expr52 range")
    return {"version": (major, minor), "stream_id": stream_id, "kind": KIND_NAMES[kind], "seq": seq,
            "t_capture_ns": t_cap, "t_features_ns": t_feat, "t_send_ns": t_send,
            "rotation_wxyz": (qw, qx, qy, qz), "translation": (tx, ty, tz), "scale": scale,
            "confidence": conf, "face_lost": bool(flags & 1), "end_of_stream": bool(flags & 4), "rows": rows}


def listen(endpoint: str, timeout_s: float = 30.0, until_end: bool = True) -> tuple[list[dict], int]:
    """Binds a SUB socket (a render node's side), reads until an END_OF_STREAM frame or silence;
    returns (frames, refused)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.setsockopt(zmq.RCVTIMEO, int(timeout_s * 1000))
    sock.bind(endpoint)
    frames, refused = [], 0
    try:
        while True:
            try:
                parts = sock.recv_multipart()
            except zmq.Again:
                break
            try:
                f = read(parts)
            except Refused:
                refused += 1
                continue
            frames.append(f)
            if until_end and f["end_of_stream"]:
                break
    finally:
        sock.close(linger=0)
    return frames, refused
