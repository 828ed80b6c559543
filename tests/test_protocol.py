"""Stream protocol: round trips, strictness, and a hypothesis fuzz proving the decoder's contract."""
from __future__ import annotations

import struct
import timeit

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind, Flags, HeadPose, ProtocolError, ProtocolErrorKind


def make_frame(kind=FeatureKind.MP478, dtype=np.float16, seq=7, stream_id="alice", flags=Flags.NONE) -> FeatureFrame:
    shape = protocol.FEATURE_SHAPES[kind]
    rng = np.random.default_rng(seq)
    return FeatureFrame(
        stream_id=stream_id, seq=seq, kind=kind,
        features=rng.standard_normal(shape).astype(dtype),
        t_capture_ns=1_000_000_000, t_features_ns=1_003_000_000, t_send_ns=1_004_000_000,
        pose=HeadPose((0.5, 0.5, 0.5, 0.5), (320.0, 180.0, -5.0), 70.0),
        confidence=0.9, flags=flags,
    )


@pytest.mark.parametrize("kind", [FeatureKind.MP478, FeatureKind.DECA2048])
@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_round_trip(kind, dtype):
    frame = make_frame(kind, dtype, flags=Flags.FACE_LOST | Flags.NEUTRAL_ESTIMATED)
    parts = protocol.encode(frame)
    assert parts[0] == b"alice"
    out = protocol.decode(parts)
    assert out.stream_id == "alice" and out.seq == 7 and out.kind == kind
    assert out.features.dtype == np.dtype(dtype) and out.features.shape == protocol.FEATURE_SHAPES[kind]
    np.testing.assert_array_equal(out.features, frame.features)
    assert (out.t_capture_ns, out.t_features_ns, out.t_send_ns) == (1_000_000_000, 1_003_000_000, 1_004_000_000)
    assert out.pose.rotation == (0.5, 0.5, 0.5, 0.5) and out.pose.translation == (320.0, 180.0, -5.0)
    assert out.pose.scale == 70.0 and abs(out.confidence - 0.9) < 1e-6
    assert out.face_lost and not out.end_of_stream


def test_send_time_override_and_control_frame():
    eos = FeatureFrame("s1", 3, FeatureKind.NONE, np.zeros((0, 0), np.float32), 5, 6, flags=Flags.END_OF_STREAM)
    out = protocol.decode(protocol.encode(eos, t_send_ns=99))
    assert out.end_of_stream and out.t_send_ns == 99 and out.features.size == 0


def test_mp478_frame_size_is_small():
    assert len(protocol.encode(make_frame())[1]) == protocol.HEADER_SIZE + 478 * 3 * 2  # ~2.9 KB at fp16


def body_with(frame: FeatureFrame, **fields) -> list[bytes]:
    """Re-packs a valid frame's header with some fields replaced (names from the header layout)."""
    topic, body = protocol.encode(frame)
    names = ["magic", "version", "header_size", "kind", "dtype", "flags", "d0", "d1", "sid", "seq",
             "t_cap", "t_feat", "t_send", "qw", "qx", "qy", "qz", "tx", "ty", "tz", "scale", "conf", "nbytes"]
    values = dict(zip(names, protocol._HEADER.unpack_from(body)))
    values.update(fields)
    header = protocol._HEADER.pack(*[values[n] for n in names])
    return [topic, header + body[protocol.HEADER_SIZE:]]


@pytest.mark.parametrize("fields, kind", [
    ({"magic": b"XXXX"}, ProtocolErrorKind.BAD_MAGIC),
    ({"version": 2}, ProtocolErrorKind.BAD_VERSION),
    ({"header_size": 12}, ProtocolErrorKind.BAD_HEADER_SIZE),
    ({"kind": 9}, ProtocolErrorKind.BAD_KIND),
    ({"dtype": 3}, ProtocolErrorKind.BAD_DTYPE),
    ({"flags": 0x80}, ProtocolErrorKind.BAD_FLAGS),
    ({"d0": 479}, ProtocolErrorKind.BAD_SHAPE),
    ({"nbytes": 10}, ProtocolErrorKind.BAD_LENGTH),
    ({"sid": b"bad id!"}, ProtocolErrorKind.BAD_STREAM_ID),
    ({"sid": b"al\0ce"}, ProtocolErrorKind.BAD_STREAM_ID),
    ({"sid": b"bob"}, ProtocolErrorKind.TOPIC_MISMATCH),
    ({"qw": float("nan")}, ProtocolErrorKind.BAD_NUMBER),
    ({"conf": 1.5}, ProtocolErrorKind.BAD_NUMBER),
    ({"t_cap": -1}, ProtocolErrorKind.BAD_NUMBER),
    ({"dtype": 2}, ProtocolErrorKind.BAD_LENGTH),  # says float32 but carries float16 bytes
])
def test_each_header_defect_is_named(fields, kind):
    with pytest.raises(ProtocolError) as exc:
        protocol.decode(body_with(make_frame(), **fields))
    assert exc.value.kind is kind


def test_structural_defects():
    topic, body = protocol.encode(make_frame())
    cases = [
        ([body], ProtocolErrorKind.WRONG_PART_COUNT),
        ([topic, body, b""], ProtocolErrorKind.WRONG_PART_COUNT),
        ([topic, body[:20]], ProtocolErrorKind.TOO_SHORT),
        ([topic, body[:-1]], ProtocolErrorKind.BAD_LENGTH),
        ([topic, body + b"\0"], ProtocolErrorKind.BAD_LENGTH),
        ([topic, body + b"\0" * protocol.MAX_MESSAGE_BYTES], ProtocolErrorKind.TOO_LONG),
    ]
    for parts, kind in cases:
        with pytest.raises(ProtocolError) as exc:
            protocol.decode(parts)
        assert exc.value.kind is kind


def test_non_finite_features_rejected():
    frame = make_frame(dtype=np.float32)
    feats = frame.features.copy()
    feats[3, 1] = np.inf
    topic, body = protocol.encode(FeatureFrame(**{**frame.__dict__, "features": feats}))
    with pytest.raises(ProtocolError) as exc:
        protocol.decode([topic, body])
    assert exc.value.kind is ProtocolErrorKind.BAD_NUMBER


def test_encode_rejects_bad_frames():
    with pytest.raises(ValueError):
        protocol.encode(make_frame(stream_id="has space"))
    with pytest.raises(ValueError):
        protocol.encode(FeatureFrame("a", 0, FeatureKind.MP478, np.zeros((10, 3), np.float32), 0, 0))
    with pytest.raises(ValueError):
        protocol.encode(FeatureFrame("a", 0, FeatureKind.MP478, np.zeros((478, 3), np.float64), 0, 0))


def _decode_outcome(parts) -> None:
    """The contract: a FeatureFrame or a ProtocolError, nothing else."""
    try:
        frame = protocol.decode(parts)
    except ProtocolError:
        return
    assert isinstance(frame, FeatureFrame)
    assert frame.features.shape == protocol.FEATURE_SHAPES[frame.kind]
    assert np.isfinite(frame.features).all()


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=4000), min_size=0, max_size=4))
def test_fuzz_random_bytes(parts):
    _decode_outcome(parts)


VALID = [protocol.encode(make_frame(k, d, seq=i)) for i, (k, d) in enumerate(
    [(FeatureKind.MP478, np.float16), (FeatureKind.MP478, np.float32), (FeatureKind.DECA2048, np.float16)])]


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 255)), max_size=8),
    st.integers(0, 3),
    st.binary(max_size=16),
)
def test_fuzz_mutated_frames(valid, flips, cut_mode, extra):
    """Bit-level mutations focused on the header, truncations and extensions of valid frames."""
    topic, body = valid
    b = bytearray(body)
    for pos, val in flips:
        b[pos % len(b)] = val
    if cut_mode == 1:
        b = b[: len(b) // 2]
    elif cut_mode == 2:
        b = b + extra
    elif cut_mode == 3 and flips:
        topic = topic + extra
    _decode_outcome([topic, bytes(b)])


@settings(max_examples=300, deadline=None)
@given(st.integers(0, protocol.HEADER_SIZE - 1), st.binary(min_size=1, max_size=8))
def test_fuzz_header_fields_one_at_a_time(offset, junk):
    topic, body = VALID[0]
    b = bytearray(body)
    b[offset: offset + len(junk)] = junk
    _decode_outcome([topic, bytes(b)])


def test_codec_is_fast():
    """No per-element Python: encoding or decoding an mp478 frame takes well under half of one
    Python pass over its 1434 floats, timed in the same run (an absolute 50 µs bound failed on a
    loaded host: decode measured 37 µs there, 15 µs quiet; the Python pass is about 170 µs)."""
    frame = make_frame()
    parts = protocol.encode(frame)
    flat = frame.features.ravel()

    def best(fn, number):
        return min(timeit.repeat(fn, number=number, repeat=5)) / number

    per_element = best(lambda: [float(v) for v in flat], 50)
    enc, dec = best(lambda: protocol.encode(frame), 500), best(lambda: protocol.decode(parts), 500)
    assert enc < 0.5 * per_element and dec < 0.5 * per_element, (enc, dec, per_element)


def test_header_layout_is_little_endian_and_stable():
    assert protocol._HEADER.format.startswith("<")
    assert protocol.HEADER_SIZE == struct.calcsize("<4sHHHBBII32sQqqq4f3fffI") == 124
