"""The named expression space: names and tables, weights measured on real faces, the expr52 wire
kind and its versioning, avatars that accept it, the engine's per-kind routing."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from inference.features import expr52_names as names
from inference.features.expr52 import BASE_CONFIDENCE, SHAPE, effective_weights, expr52_frame, expr52_weights
from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind, ProtocolError, ProtocolErrorKind


def test_names_are_the_52_arkit_shapes_in_live_link_order():
    assert len(names.ARKIT52) == 52 and len(set(names.ARKIT52)) == 52
    # Spot checks against Unreal's EARFaceBlendShape order (what Live Link Face sends).
    assert names.ARKIT52[0] == "eyeBlinkLeft" and names.ARKIT52[14:18] == ("jawForward", "jawLeft", "jawRight", "jawOpen")
    assert names.ARKIT52[23:25] == ("mouthSmileLeft", "mouthSmileRight") and names.ARKIT52[51] == "tongueOut"
    for table in (names.ARKIT_TO_UNIFIED, names.FACS_TO_ARKIT, names.HTC_TO_ARKIT):
        assert set(table) <= set(names.ARKIT52)
    unified = [u for us in names.ARKIT_TO_UNIFIED.values() for u in us]
    assert len(unified) == len(set(unified)), "a Unified shape fed by two ARKit weights could not be read back"


@pytest.fixture(scope="module")
def man():
    """The man's clip (neutral → smile → neutral): canonical shapes and his online neutral, as the capture node measures."""
    from tools.eval_transfer import driver_features, track_driver
    from tools.samples import sample_path

    track = track_driver(sample_path("single_face.mp4"), keep_frames=False)
    _, canons, neutral = driver_features(track)
    return [c for c in canons if c is not None], neutral


def test_weights_follow_a_real_smile(man):
    canons, neutral = man
    w = expr52_weights(np.array(canons), neutral)
    assert w.shape == (len(canons), 52) and w.min() >= 0 and w.max() <= 1
    smile = w[:, [names.INDEX["mouthSmileLeft"], names.INDEX["mouthSmileRight"]]].mean(1)
    # His smile sits in the middle of the clip; the start is his relaxed face.
    assert smile[:5].mean() < 0.1 and smile[30:45].mean() > 0.6, (smile[:5].mean(), smile[30:45].mean())
    # Not saturated: the full scales leave room above his widest smile on most frames.
    assert (smile >= 0.999).mean() < 0.2
    # The relaxed face itself gives (almost) nothing.
    assert expr52_weights(neutral, neutral).max() == 0.0


def test_payload_carries_confidences(man):
    n = man[1]
    p = expr52_frame(n, n, face_confidence=0.5)
    assert p.shape == SHAPE and np.allclose(p[:, 1], BASE_CONFIDENCE * 0.5)
    assert p[names.INDEX["tongueOut"], 1] == 0.0  # landmarks cannot see the tongue: never claimed
    assert np.all(effective_weights(p) == 0)


def _expr_frame(seq=0) -> FeatureFrame:
    payload = np.stack([np.linspace(0, 1, 52), np.full(52, 0.75)], 1).astype(np.float32)
    return FeatureFrame("alice", seq, FeatureKind.EXPR52, payload, 10, 20)


def test_expr52_round_trip_and_version_stamps():
    parts = protocol.encode(_expr_frame())
    back = protocol.decode(parts)
    assert back.kind is FeatureKind.EXPR52 and np.array_equal(back.features, _expr_frame().features)
    version = struct.unpack_from("<H", parts[1], 4)[0]
    assert (version & 0xFF, version >> 8) == (1, 1)  # kind introduced in 1.1
    mp = protocol.encode(FeatureFrame("alice", 0, FeatureKind.MP478, np.zeros((478, 3), np.float16), 1, 1))
    assert struct.unpack_from("<H", mp[1], 4)[0] == 1  # 1.0: what an older reader expects


def test_versioning_rule_newer_minor_with_longer_header_is_read():
    topic, body = protocol.encode(_expr_frame())
    extra = b"\xab" * 12  # fields a future 1.7 appends to the header
    header = bytearray(body[:protocol.HEADER_SIZE])
    struct.pack_into("<HH", header, 4, protocol.version_field(1, 7), protocol.HEADER_SIZE + len(extra))
    frame = protocol.decode([topic, bytes(header) + extra + body[protocol.HEADER_SIZE:]])
    assert np.array_equal(frame.features, _expr_frame().features)
    struct.pack_into("<H", header, 4, protocol.version_field(2, 0))
    with pytest.raises(ProtocolError) as exc:
        protocol.decode([topic, bytes(header) + extra + body[protocol.HEADER_SIZE:]])
    assert exc.value.kind is ProtocolErrorKind.BAD_VERSION
    struct.pack_into("<HH", header, 4, protocol.version_field(1, 7), protocol.MAX_HEADER_SIZE + 4)
    with pytest.raises(ProtocolError) as exc:
        protocol.decode([topic, bytes(header) + extra + body[protocol.HEADER_SIZE:]])
    assert exc.value.kind is ProtocolErrorKind.BAD_HEADER_SIZE


def test_expr52_out_of_range_is_refused():
    topic, body = protocol.encode(_expr_frame())
    bad = bytearray(body)
    struct.pack_into("<f", bad, protocol.HEADER_SIZE, 1.5)
    with pytest.raises(ProtocolError) as exc:
        protocol.decode([topic, bytes(bad)])
    assert exc.value.kind is ProtocolErrorKind.BAD_NUMBER


def test_kind_map_fits_and_round_trips():
    from inference.animation.kind_map import fit_kind_map, load_kind_maps

    rng = np.random.default_rng(0)
    w_true = rng.normal(size=(52, 30)).astype(np.float32)
    x = rng.uniform(0, 1, (400, 52)).astype(np.float32)
    payloads = np.stack([x, np.ones_like(x)], -1)
    kmap, metrics = fit_kind_map("expr52", payloads, x @ w_true, ridge=1e-6)
    assert metrics["r2_about_zero"] > 0.999 and np.allclose(kmap.apply(payloads[0]), x[0] @ w_true, atol=1e-2)
    assert np.allclose(kmap.apply(np.zeros((52, 2), np.float32)), 0)  # relaxed driver → relaxed features
    loaded = load_kind_maps({"expr52": {}}, kmap.tensors(), 30)
    assert np.array_equal(loaded["expr52"].weight, kmap.weight)
    with pytest.raises(ValueError, match="shape"):
        load_kind_maps({"expr52": {}}, kmap.tensors(), 31)
    with pytest.raises(ValueError, match="missing"):
        load_kind_maps({"expr52": {}}, {}, 30)
    with pytest.raises(ValueError, match="does not declare"):
        load_kind_maps({}, kmap.tensors(), 30)


def test_engine_routes_by_kind_and_counts_unsupported(caplog):
    from inference.animation.kind_map import KindMap
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.reference_avatar import reference_avatar

    model = reference_avatar(feature_dim=1434, z_dim=16, seed=0)
    model.feature_kind = "mp478"
    model.kind_maps = {"expr52": KindMap("expr52", np.random.default_rng(1).normal(0, 0.3, (52, 1434)).astype(np.float32))}
    def drive(payload) -> tuple:
        engine = StreamingEngine({"a": model}, EngineConfig(feature_limits=None))
        for i in range(12):  # 50 ms apart: long enough for the fade-in to finish
            t = (i + 1) * 50_000_000
            state = engine.step({"a": [FeatureFrame("a", i, FeatureKind.EXPR52, payload, t, t)]}, now_ns=t)["a"]
        return engine, state

    _, rest = drive(np.zeros((52, 2), np.float32))
    engine, smile = drive(_expr_frame().features)
    assert rest.status == "tracking" and smile.status == "tracking"
    assert np.abs(rest.z - smile.z).max() > 1e-3  # the mapped weights moved the avatar
    with caplog.at_level("WARNING"):
        for i in range(3):
            t = 700_000_000 + i * 50_000_000
            deca = FeatureFrame("a", 20 + i, FeatureKind.DECA2048, np.zeros((2048, 1), np.float32), t, t)
            state = engine.step({"a": [deca]}, now_ns=t)["a"]
    assert state.status == "face_lost"
    assert engine.feature_counters()["a"]["unsupported_kind"] == 3
    assert sum("sends deca2048 features" in r.getMessage() for r in caplog.records) == 1  # said once


def test_kind_map_per_region_keeps_upper_weights_off_the_mouth():
    from inference.animation.kind_map import fit_kind_map

    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (500, 52)).astype(np.float32)
    upper = np.array([n in names.UPPER_FACE for n in names.ARKIT52])
    # The target always smiles with raised brows: brow weights and mouth features correlate.
    x[:, names.INDEX["browInnerUp"]] = x[:, names.INDEX["mouthSmileLeft"]]
    feature_upper = np.repeat(np.r_[np.ones(5), np.zeros(5)], 3)  # 10 points: 5 upper, 5 lower
    y = np.zeros((500, 30), np.float32)
    y[:, :15] = x[:, [names.INDEX["browInnerUp"]]]  # brows move the upper points
    y[:, 15:] = x[:, [names.INDEX["mouthSmileLeft"]]]  # the smile moves the lower ones
    payloads = np.stack([x, np.ones_like(x)], -1)
    kmap, _ = fit_kind_map("expr52", payloads, y, regions=(upper, feature_upper))
    assert np.abs(kmap.weight[upper][:, 15:]).max() == 0  # an eye/brow weight never moves the mouth
    assert np.abs(kmap.weight[~upper][:, :15]).max() == 0
    brow_only = np.zeros((52, 2), np.float32)
    brow_only[names.INDEX["browInnerUp"]] = (1, 1)
    out = kmap.apply(brow_only)
    assert out[:15].mean() > 0.9 and np.abs(out[15:]).max() == 0


def test_kind_map_mouth_bands_keep_the_upper_lip_off_the_chin(man):
    """A target who always grins with her jaw open (mouthUpperUp follows jawOpen, with a little of
    its own) taught the free map that the upper lip lifts the chin; a driver who grins without
    opening his jaw then got an avatar whose chin rose (the man's jaw_open r −0.67 through expr52).
    With the builder's bands an upper-lip weight never moves a point below the mouth, nor a jaw
    weight one above it, and the chin moves with jawOpen alone."""
    from inference.animation.kind_map import fit_kind_map
    from inference.builder.kind_maps import face_bands
    from inference.head_model.face_regions import RegionSplit, below_mouth_weight

    neutral = np.asarray(man[1], np.float64)  # a real relaxed face in canonical coordinates
    below = below_mouth_weight(neutral)
    assert below[152] > 0.99 and below[17] == 1.0 and below[0] == 0.0 and below[1] < 0.01  # chin, lips, nose tip
    assert 0.3 < below[61] < 0.7  # a mouth corner is half and half
    point_weight = RegionSplit().upper_weight(neutral, neutral)
    rng = np.random.default_rng(3)
    x = np.zeros((400, 52), np.float32)
    jaw, lip = names.INDEX["jawOpen"], names.INDEX["mouthUpperUpLeft"]
    x[:, jaw] = rng.uniform(0, 1, 400)
    x[:, lip] = np.clip(x[:, jaw] + rng.normal(0, 0.05, 400), 0, 1)
    y = np.zeros((400, 478, 3), np.float32)
    y[:, 152, 1] = -x[:, jaw]  # the jaw drops the chin
    y[:, 0, 1] = 0.5 * x[:, lip]  # the upper lip lifts the lip's top
    payloads = np.stack([x, np.ones_like(x)], -1)
    free, _ = fit_kind_map("expr52", payloads, y.reshape(400, -1))
    banded, _ = fit_kind_map("expr52", payloads, y.reshape(400, -1), bands=face_bands(point_weight, neutral, True))
    chin_y, lip_y = 152 * 3 + 1, 0 * 3 + 1
    assert abs(free.weight[lip, chin_y]) > 0.05  # the correlation leaks without the bands
    # (the chin's share above the mouth is a logistic tail, ~1e-12: zero for any rendering)
    assert abs(banded.weight[lip, chin_y]) < 1e-6 and banded.weight[jaw, lip_y] == 0.0
    grin = np.zeros((52, 2), np.float32)
    grin[:, 1] = 1
    grin[lip, 0] = 0.9  # the upper lip up, the jaw shut
    out = banded.apply(grin).reshape(478, 3)
    assert abs(out[152, 1]) < 1e-6 and out[0, 1] > 0.3
    with pytest.raises(ValueError, match="add up to 1"):
        fit_kind_map("expr52", payloads, y.reshape(400, -1), bands=[(np.ones(52, bool), np.full(478 * 3, 0.5))])


def test_expr52_streams_carry_winks_and_gaze_to_the_avatars_eyes():
    """An expr52 stream's eyes come from its named weights: a left wink closes only the left eye
    and eyeLook* moves both irises the same way (the kind map alone, fitted on frames where both
    eyes close together, could carry neither)."""
    from inference.animation.kind_map import KindMap
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.reference_avatar import reference_avatar

    model = reference_avatar(feature_dim=1434, z_dim=16, seed=0)
    model.feature_kind = "mp478"
    model.kind_maps = {"expr52": KindMap("expr52", np.zeros((52, 1434), np.float32))}
    engine = StreamingEngine({"a": model}, EngineConfig(feature_limits=None))
    w = np.zeros(52, np.float32)
    w[names.INDEX["eyeBlinkLeft"]] = 1.0
    w[names.INDEX["eyeLookOutLeft"]] = 0.8  # both eyes towards the subject's left
    w[names.INDEX["eyeLookInRight"]] = 0.8
    payload = np.stack([w, np.ones(52, np.float32)], -1)
    for i in range(12):
        t = (i + 1) * 50_000_000
        state = engine.step({"a": [FeatureFrame("a", i, FeatureKind.EXPR52, payload, t, t)]}, now_ns=t)["a"]
    closure, gaze = state.eyes.closure, state.eyes.gaze
    assert closure[1] > 0.9 and closure[0] < 0.05  # (right, left): only the left eye shut
    assert gaze[0, 0] > 0.3 and gaze[1, 0] > 0.3 and abs(gaze[0, 1]) < 1e-6
    # A frame of the network's own kind takes the eyes back to its features.
    t = 13 * 50_000_000
    state = engine.step({"a": [FeatureFrame("a", 12, FeatureKind.MP478, np.zeros((478, 3), np.float32), t, t)]},
                        now_ns=t)["a"]
    assert state.eyes.closure.max() < 0.05
