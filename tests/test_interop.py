"""Ecosystem adapters and emitters (capture/interop): Live Link Face, VMC, Unified-Expressions OSC.

Senders follow the published formats: Live Link Face packets are packed here with `struct` from the
field table (not with our encoder), VMC and Unified OSC are sent by python-osc's own UDP client.
The end-to-end test runs the capture node on a real clip, its Live Link / VMC / OSC outputs into
`headcast adapt` processes, all streams into one real receiver, and drives the avatar with each.
"""
from __future__ import annotations

import json
import socket
import struct
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _processes import Node, free_port
from capture.interop import livelink, osc
from capture.interop.common import Expr52Stream, SourceClock, pose_from_ypr, ypr_from_pose
from inference.features.expr52_names import INDEX
from streaming.protocol import FeatureKind
from streaming.publisher import Publisher
from streaming.receiver import Receiver, ReceiverConfig


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def published_format_packet(weights, yaw=0.0, frame=100, subframe=0.25, fps=60, subject="iPhone") -> bytes:
    """A Live Link Face datagram packed from the documented layout alone."""
    dev, sub = b"DEVICE-1234", subject.encode()
    values = list(weights) + [yaw, 0.0, 0.0] + [0.0] * 6
    return (struct.pack(">B", 6) + struct.pack(">I", len(dev)) + dev + struct.pack(">I", len(sub)) + sub
            + struct.pack(">ifii", frame, subframe, fps, 1) + struct.pack(">B", 61) + struct.pack(">61f", *values))


def test_livelink_codec_reads_the_published_layout():
    w = np.linspace(0, 1, 52, dtype=np.float32)
    f = livelink.decode(published_format_packet(w, yaw=0.3))
    assert f.subject == "iPhone" and f.device_id == "DEVICE-1234" and np.allclose(f.weights, w)
    assert f.head_ypr[0] == pytest.approx(0.3) and f.time_s == pytest.approx(100.25 / 60)
    assert livelink.encode(f) == published_format_packet(w, yaw=0.3)
    for bad, reason in [(b"", "truncated"), (b"\x05" + b"\0" * 300, "bad_version"),
                        (published_format_packet(w)[:-3], "truncated"), (published_format_packet(w) + b"x", "trailing_bytes")]:
        with pytest.raises(livelink.LiveLinkError) as exc:
            livelink.decode(bad)
        assert exc.value.reason == reason


def test_head_pose_round_trips_through_yaw_pitch_roll():
    for ypr in [(0.0, 0.0, 0.0), (0.4, -0.2, 0.1), (-1.0, 0.5, -0.3)]:
        assert np.allclose(ypr_from_pose(pose_from_ypr(*ypr)), ypr, atol=1e-6)
    # Frontal (all zero) is the tracker's frontal pose: 180° about x.
    assert np.allclose(pose_from_ypr(0, 0, 0).rotation, (0, 1, 0, 0), atol=1e-9)


def test_source_clock_maps_onto_ours_and_resets_on_jumps():
    c = SourceClock(reset_after_s=1.0)
    assert c.map(10.0, 5_000_000_000) == 5_000_000_000
    assert c.map(10.1, 5_130_000_000) == 5_100_000_000  # 30 ms slower packet: mapped to its source time
    assert c.map(10.2, 5_195_000_000) == 5_195_000_000  # a faster one tightens the offset
    assert c.map(500.0, 6_000_000_000) == 6_000_000_000 and c.resets == 1
    assert c.map(None, 7) == 7


VALID_LL = published_format_packet(np.full(52, 0.5))
VALID_VMC = osc.bundle(osc.vmc_messages(np.full(52, 0.5), pose_from_ypr(0.1, 0, 0), 1.0))
VALID_UE = osc.bundle(osc.unified_messages(np.full(52, 0.5)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=600),
                 st.tuples(st.sampled_from([VALID_LL, VALID_VMC, VALID_UE]), st.integers(0, 3000), st.binary(min_size=1, max_size=16))
                 .map(lambda t: t[0][:t[1] % len(t[0])] + t[2] + t[0][t[1] % len(t[0]) + len(t[2]):])))
def test_fuzz_decoders_never_raise_anything_but_counted_drops(data):
    try:
        livelink.decode(data)
    except livelink.LiveLinkError:
        pass
    for mode in ("vmc", "unified"):
        d = osc.OscDecoder(mode)
        for w, c, pose, t in d.feed(data, 0):  # whatever survives is a well-formed frame
            assert w.shape == (52,) and np.all((w >= 0) & (w <= 1)) and np.all(np.isfinite(w))


class _Rx:
    def __init__(self):
        self.rx = Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:0", history=512)).start()
        self.pub = Publisher(self.rx.bound_endpoint)
        time.sleep(0.3)  # slow joiner

    def frames(self, sid):
        return [r.frame for r in self.rx.window_received(sid, 512)]

    def close(self):
        self.pub.close()
        self.rx.stop()


def _run_in_thread(adapter):
    t = threading.Thread(target=adapter.run, daemon=True)
    t.start()
    return t


def test_livelink_adapter_over_udp_counts_garbage_and_keeps_going():
    r = _Rx()
    ad = livelink.LiveLinkAdapter("127.0.0.1", 0, Expr52Stream(r.pub, "phone"))
    th = _run_in_thread(ad)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            w = np.zeros(52, np.float32)
            w[INDEX["jawOpen"]] = 0.8
            for i, data in enumerate([b"garbage", published_format_packet(w, yaw=0.2, frame=1), b"\x06" + b"\xff" * 40,
                                      published_format_packet(w, yaw=0.2, frame=2)]):
                s.sendto(data, ad.address)
        assert r.rx.wait_for(lambda x: len(r.frames("phone")) == 2, 5), ad.stats
        f = r.frames("phone")[-1]
        assert f.kind is FeatureKind.EXPR52 and f.features[INDEX["jawOpen"], 0] == pytest.approx(0.8)
        assert f.features[:, 1].min() == 1.0  # the app sends no confidences: all trusted
        assert ypr_from_pose(f.pose)[0] == pytest.approx(0.2, abs=1e-5)
        assert ad.stats.malformed == 2 and ad.stats.frames == 2
    finally:
        ad.stop()
        th.join(2)
        ad.close()
        r.close()


def test_vmc_and_unified_from_python_osc_client():
    from pythonosc.udp_client import SimpleUDPClient

    r = _Rx()
    vmc = osc.OscAdapter("127.0.0.1", 0, Expr52Stream(r.pub, "vsee"), "vmc")
    ue = osc.OscAdapter("127.0.0.1", 0, Expr52Stream(r.pub, "vrcft"), "unified")
    threads = [_run_in_thread(vmc), _run_in_thread(ue)]
    try:
        c = SimpleUDPClient(*vmc.address[:2])
        c.send_message("/VMC/Ext/Blend/Val", ["JawOpen", 0.7])
        c.send_message("/VMC/Ext/Blend/Val", ["Blink_L", 1.0])
        c.send_message("/VMC/Ext/Blend/Val", ["NotAClip", 0.5])
        c.send_message("/VMC/Ext/Bone/Pos", ["Head", 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0])
        c.send_message("/VMC/Ext/Blend/Val", [1, 2])  # wrong argument types: counted
        c.send_message("/VMC/Ext/Blend/Apply", [])
        u = SimpleUDPClient(*ue.address[:2])
        u.send_message("/avatar/parameters/v2/JawOpen", 0.4)
        u.send_message("/avatar/parameters/v2/MouthCornerPullLeft", 0.9)
        u.send_message("/avatar/parameters/v2/MouthCornerSlantLeft", 0.7)
        u.send_message("/avatar/parameters/v2/EyeLidRight", 0.25)
        u.send_message("/avatar/parameters/v2/JawOpen", "wide")  # wrong type: counted
        assert r.rx.wait_for(lambda x: r.frames("vsee") and r.frames("vrcft"), 5), (vmc.stats, ue.stats)
        fv, fu = r.frames("vsee")[-1], r.frames("vrcft")[-1]
        assert fv.features[INDEX["jawOpen"], 0] == pytest.approx(0.7) and fv.features[INDEX["eyeBlinkLeft"], 0] == 1.0
        assert fv.features[INDEX["mouthSmileLeft"], 1] == 0.0  # not sent: no confidence
        assert vmc.stats.malformed_by_reason == {"bad_arguments": 1}
        assert fu.features[INDEX["jawOpen"], 0] == pytest.approx(0.4)
        assert fu.features[INDEX["mouthSmileLeft"], 0] == pytest.approx(0.8)  # mean of its Unified shapes
        assert fu.features[INDEX["eyeBlinkRight"], 0] == pytest.approx(0.75)
        assert ue.stats.malformed_by_reason == {"bad_arguments": 1}
    finally:
        for a in (vmc, ue):
            a.stop()
        for t in threads:
            t.join(2)
        for a in (vmc, ue):
            a.close()
        r.close()


def test_adapt_process_appears_in_headcast_listen(tmp_path):
    """`headcast adapt osc` → `headcast listen`: an ordinary stream, kind expr52."""
    from pythonosc.udp_client import SimpleUDPClient

    port = free_port()
    udp = free_udp_port()
    listen = Node(["listen", "--bind", f"tcp://127.0.0.1:{port}", "--seconds", "30", "--clock-bind", "off"],
                  json_path=tmp_path / "listen.json")
    adapt = Node(["adapt", "osc", "--listen", f"127.0.0.1:{udp}", "--connect", f"tcp://127.0.0.1:{port}",
                  "--stream", "headset"])
    try:
        client = SimpleUDPClient("127.0.0.1", udp)
        time.sleep(0.5)
        for i in range(40):
            client.send_message("/avatar/parameters/v2/JawOpen", 0.5 + 0.01 * i)
            time.sleep(0.02)
        client.send_message("/avatar/parameters/v2/JawOpen", float("nan"))  # non-finite: counted
        time.sleep(0.3)
        stats = listen.terminate()  # first: the adapter's end-of-stream frame would be the newest otherwise
        adapt.terminate()
        counters = json.loads(adapt.stdout.strip().splitlines()[-1])
        assert counters["frames"] >= 5 and counters["malformed_by_reason"] == {"bad_arguments": 1}
    finally:
        adapt.kill()
        listen.kill()
    streams = stats["streams"]
    assert streams["headset"]["kind"] == "expr52" and streams["headset"]["received"] >= 5, streams


def test_non_loopback_listen_needs_insecure_listen():
    from _processes import run_headcast

    r = run_headcast(["adapt", "livelink", "--listen", "0.0.0.0:0", "--connect", "tcp://127.0.0.1:9", "--stream", "x"])
    assert r.returncode == 2 and "--insecure-listen" in r.stderr and "Traceback" not in r.stderr


def test_loose_unified_parameters_group_by_repetition_not_by_arrival_time():
    """A 60 Hz sender's frames, one parameter per datagram: however close together or spread out
    they arrive, each frame comes out whole and alone (a repeated parameter starts the next)."""
    from pythonosc.osc_message_builder import OscMessageBuilder

    def dgram(name, v):
        b = OscMessageBuilder(f"/avatar/parameters/v2/{name}")
        b.add_arg(float(v))
        return b.build().dgram

    dec = osc.OscDecoder("unified")
    groups = [(0.1 * k, 0.05 * k) for k in range(1, 6)]
    frames, t = [], 0
    for k, (smile, jaw) in enumerate(groups):
        for name, v in (("MouthCornerPullLeft", smile), ("MouthCornerPullRight", smile), ("JawOpen", jaw)):
            # Bunched (three frames inside 1 ms) or spread (40 ms inside one frame): no difference.
            t += 40_000_000 if k == 3 else 100_000
            frames += dec.feed(dgram(name, v), t)
    frames += dec.commit()
    assert len(frames) == len(groups)
    for (w, c, _, _), (smile, jaw) in zip(frames, groups):
        assert w[INDEX["mouthSmileLeft"]] == pytest.approx(smile) and w[INDEX["mouthSmileRight"]] == pytest.approx(smile)
        assert w[INDEX["jawOpen"]] == pytest.approx(jaw) and c[INDEX["jawOpen"]] == 1.0
    # A bundle is a frame of its own, and ends the loose one before it.
    dec.feed(dgram("JawOpen", 0.3), 0)
    out = dec.feed(osc.bundle(osc.unified_messages(np.full(52, 0.5))), 1)
    assert len(out) == 2 and out[0][0][INDEX["jawOpen"]] == pytest.approx(0.3)
    assert out[1][0][INDEX["jawOpen"]] == pytest.approx(0.5)


def test_the_last_loose_frame_is_committed_after_the_quiet_period():
    r = _Rx()
    ad = osc.OscAdapter("127.0.0.1", 0, Expr52Stream(r.pub, "ue"), "unified", quiet_period_s=0.02)
    try:
        from pythonosc.osc_message_builder import OscMessageBuilder

        b = OscMessageBuilder("/avatar/parameters/v2/JawOpen")
        b.add_arg(0.6)
        ad.handle(b.build().dgram, arrival_ns=1_000_000_000)
        ad.poll(now_ns=1_015_000_000)
        assert ad.stats.frames == 0           # still within the quiet period: more may follow
        ad.poll(now_ns=1_021_000_000)
        assert ad.stats.frames == 1
        assert r.rx.wait_for(lambda x: r.frames("ue"), 5)
        assert r.frames("ue")[-1].features[INDEX["jawOpen"], 0] == pytest.approx(0.6)
    finally:
        ad.close()
        r.close()
