"""Receiver over real ZeroMQ sockets: windows, drops, hostile input, lost/resume, CURVE allow-lists."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind, Flags
from streaming.sockets import CurveClient, CurveServer, InsecureBindError, generate_keys
from streaming.publisher import Publisher
from streaming.receiver import Receiver, ReceiverConfig

ANY_PORT = "tcp://127.0.0.1:*"


def frame(seq: int, stream_id: str = "alice", t0: int = 10**12, flags=Flags.NONE) -> FeatureFrame:
    feats = np.full((478, 3), seq % 100 / 100.0, dtype=np.float16)
    return FeatureFrame(stream_id, seq, FeatureKind.MP478, feats, t0 + seq * 1000, t0 + seq * 1000 + 10, flags=flags)


def connect_until_received(pub: Publisher, rx: Receiver, stream_id: str = "alice", timeout: float = 5.0) -> int:
    """PUB drops what it sends before the connection is up; send probes until one arrives.

    Returns the next unused sequence number."""
    seq = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pub.send(frame(seq, stream_id))
        seq += 1
        if rx.latest(stream_id) is not None:
            return seq
        time.sleep(0.01)
    raise AssertionError("publisher never got through")


@pytest.fixture
def rx():
    r = Receiver(ReceiverConfig(endpoint=ANY_PORT, lost_after_s=0.3, history=16)).start()
    yield r
    r.stop()


def test_frames_arrive_in_order_with_window(rx):
    with Publisher(rx.bound_endpoint) as pub:
        seq = connect_until_received(pub, rx)
        for s in range(seq, seq + 40):
            pub.send(frame(s))
            time.sleep(0.001)
        assert rx.wait_for(lambda r: r.latest("alice").seq == seq + 39, 3)
    win = rx.window("alice", 8)
    assert [f.seq for f in win] == list(range(seq + 32, seq + 40))
    assert len(rx.window("alice", 100)) == 16  # bounded history
    st = rx.snapshot()["alice"]
    assert st.received >= 40 and st.dropped == 0 and st.stale == 0 and not st.lost
    assert st.kind == "mp478" and st.latest_age_s < 2
    rec = rx.latest_received("alice")
    assert rec.t_receive_ns >= rec.frame.t_send_ns > 0  # same host, same monotonic clock


def test_one_publisher_shared_by_threads_keeps_every_frame_whole():
    """Three threads publish their own streams through one Publisher (as adapters sharing one
    may): every message that arrives is a whole frame. Without the publisher's send lock their
    multipart parts interleaved and the receiver dropped a fifth as malformed."""
    import threading

    rx = Receiver(ReceiverConfig(endpoint=ANY_PORT, history=512, rcvhwm=4096)).start()
    try:
        with Publisher(rx.bound_endpoint, hwm=4096) as pub:
            first = {sid: connect_until_received(pub, rx, sid) for sid in "abc"}
            start = threading.Barrier(3)

            def burst(sid: str) -> None:
                start.wait()
                for k in range(300):
                    pub.send(frame(first[sid] + k, sid))

            threads = [threading.Thread(target=burst, args=(sid,)) for sid in "abc"]
            for t in threads:
                t.start()
            for t in threads:
                t.join(10)
            done = rx.wait_for(lambda r: all(r.latest(s).seq == first[s] + 299 for s in "abc"), 5)
        assert rx.counters.malformed == 0, rx.counters
        assert done, {s: (first[s], rx.latest(s).seq, rx.snapshot()[s].dropped) for s in "abc"}
        assert all(rx.snapshot()[s].dropped == 0 for s in "abc"), rx.snapshot()
    finally:
        rx.stop()


def test_gaps_counted_as_drops_and_stale_frames_discarded(rx):
    with Publisher(rx.bound_endpoint) as pub:
        seq = connect_until_received(pub, rx)
        pub.send(frame(seq + 5))  # 5 frames never arrive
        pub.send(frame(seq + 3))  # older than what we hold: stale, discarded
        pub.send(frame(seq + 5))  # duplicate
        pub.send(frame(seq + 6))
        assert rx.wait_for(lambda r: r.latest("alice").seq == seq + 6, 3)
        time.sleep(0.05)
    st = rx.snapshot()["alice"]
    assert st.dropped == 5 and st.stale == 2


def test_malformed_messages_counted_and_receiver_keeps_serving(rx):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.connect(rx.bound_endpoint)
    valid = protocol.encode(frame(1))
    bad_version = [valid[0], valid[1][:4] + b"\x09\x00" + valid[1][6:]]
    hostile = [
        [b"garbage"],
        [b"alice", b"\x00" * 10],
        bad_version,
        [b"mallory", valid[1]],  # topic does not match the header
        [valid[0], valid[1], b"extra"],
    ]
    try:
        time.sleep(0.3)  # slow joiner
        for _ in range(3):
            for parts in hostile:
                raw.send_multipart(parts)
        raw.send_multipart(valid)
        assert rx.wait_for(lambda r: r.latest("alice") is not None, 3)
        assert rx.wait_for(lambda r: r.counters.malformed == 15, 3), rx.counters
        c = rx.counters
        assert c.malformed_by_kind["BAD_VERSION"] == 3 and c.malformed_by_kind["TOPIC_MISMATCH"] == 3
        assert c.malformed_by_kind["WRONG_PART_COUNT"] == 6 and c.malformed_by_kind["TOO_SHORT"] == 3
        assert rx.alive and rx.stream_ids() == ["alice"]
    finally:
        raw.close(0)


def test_oversized_message_rejected_without_harm(rx):
    ctx = zmq.Context.instance()
    raw = ctx.socket(zmq.PUB)
    raw.connect(rx.bound_endpoint)
    try:
        time.sleep(0.3)
        raw.send_multipart([b"alice", b"\0" * (protocol.MAX_MESSAGE_BYTES + 1000)])
        time.sleep(0.2)
        assert rx.counters.messages == 0  # ZMQ_MAXMSGSIZE stopped it before decoding
    finally:
        raw.close(0)
    with Publisher(rx.bound_endpoint) as pub:  # an honest publisher still gets through
        connect_until_received(pub, rx)
    assert rx.alive


def test_lost_then_resumed_after_publisher_restart(rx):
    with Publisher(rx.bound_endpoint) as pub:
        connect_until_received(pub, rx)
    assert rx.wait_for(lambda r: r.snapshot()["alice"].lost, 3)
    assert rx.snapshot()["alice"].lost_events == 1
    # The node comes back with a fresh sequence and newer timestamps.
    with Publisher(rx.bound_endpoint) as pub:
        deadline = time.monotonic() + 5
        while not rx.wait_for(lambda r: not r.snapshot()["alice"].lost, 0.05) and time.monotonic() < deadline:
            pub.send(frame(0, t0=10**13))
    st = rx.snapshot()["alice"]
    assert not st.lost and st.restarts == 1


PUBLISHER_SCRIPT = r"""
import sys, time, numpy as np
sys.path.insert(0, sys.argv[2])
from streaming.publisher import Publisher
from streaming.protocol import FeatureFrame, FeatureKind
pub = Publisher(sys.argv[1])
seq = 0
while True:
    t = time.monotonic_ns()
    pub.send(FeatureFrame("bob", seq, FeatureKind.MP478, np.zeros((478, 3), np.float16), t, t))
    seq += 1
    time.sleep(0.01)
"""


def test_publisher_killed_mid_stream(rx):
    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, rx.bound_endpoint, os.getcwd()])
    try:
        assert rx.wait_for(lambda r: "bob" in r.snapshot() and r.snapshot()["bob"].received > 10, 20)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
    assert rx.wait_for(lambda r: r.snapshot()["bob"].lost, 3)
    assert rx.alive and rx.error is None


def test_unknown_streams_and_stream_flood_are_bounded():
    cfg = ReceiverConfig(endpoint=ANY_PORT, allowed_streams=frozenset({"alice", "s0", "s1", "s2", "s3"}), max_streams=3)
    with Receiver(cfg) as rx, Publisher(rx.bound_endpoint) as pub:
        connect_until_received(pub, rx)
        for i in range(4):
            pub.send(frame(1, f"s{i}"))
        pub.send(frame(1, "eve"))
        assert rx.wait_for(lambda r: r.counters.unknown_stream == 1 and r.counters.over_capacity == 2, 3), rx.counters
        assert set(rx.stream_ids()) == {"alice", "s0", "s1"}


def test_newest_frame_wins_under_flood_and_caller_never_waits(rx):
    with Publisher(rx.bound_endpoint, hwm=8) as pub:
        seq = connect_until_received(pub, rx)
        first = rx.window("alice", 16)[0].seq
        worst = 0.0
        for s in range(seq, seq + 5000):
            pub.send(frame(s))
            if s % 250 == 0:
                t = time.perf_counter()
                rx.snapshot(), rx.window("alice", 8)
                worst = max(worst, time.perf_counter() - t)
        last = seq + 4999
        time.sleep(0.3)  # PUB drops the newest when its queue is full; let the burst drain first
        pub.send(frame(last + 1))
        assert rx.wait_for(lambda r: r.latest("alice").seq == last + 1, 3)
    assert worst < 0.05, f"a snapshot took {worst * 1e3:.1f} ms"
    st = rx.snapshot()["alice"]
    assert st.dropped > 0  # the burst overran the bounded queues instead of piling up
    assert st.received + st.dropped == st.last_seq - first + 1  # every frame is received or counted


def test_reverse_direction_capture_binds(tmp_path):
    with Publisher("tcp://127.0.0.1:*", bind=True) as pub:
        ep = pub.sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        with Receiver(ReceiverConfig(endpoint=ep, bind=False)) as rx:
            connect_until_received(pub, rx)


def test_bind_policy():
    with pytest.raises(InsecureBindError):
        Receiver(ReceiverConfig(endpoint="tcp://0.0.0.0:5599")).start()
    with pytest.raises(InsecureBindError):
        Publisher("tcp://*:5599", bind=True)


@pytest.fixture
def keys(tmp_path):
    generate_keys(tmp_path, ["server"])
    generate_keys(tmp_path / "clients", ["good", "stranger"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "good.key").write_bytes((tmp_path / "clients" / "good.key").read_bytes())
    return tmp_path


def test_curve_allow_list(keys):
    server = CurveServer(keys / "server.key_secret", keys / "allowed")
    cfg = ReceiverConfig(endpoint=ANY_PORT, curve_server=server)
    with Receiver(cfg) as rx:
        ep = rx.bound_endpoint
        good = Publisher(ep, curve_client=CurveClient(keys / "clients" / "good.key_secret", keys / "server.key"))
        stranger = Publisher(ep, curve_client=CurveClient(keys / "clients" / "stranger.key_secret", keys / "server.key"))
        plain = Publisher(ep)
        try:
            connect_until_received(good, rx, "alice")
            deadline = time.monotonic() + 1.5
            s = 0
            while time.monotonic() < deadline:
                stranger.send(frame(s, "mallory"))
                plain.send(frame(s, "trudy"))
                s += 1
                time.sleep(0.005)
            assert s > 50
            assert rx.stream_ids() == ["alice"]  # neither the unknown key nor plaintext got through
            assert rx.counters.malformed == 0 and rx.counters.unknown_stream == 0
        finally:
            for p in (good, stranger, plain):
                p.close()


def test_curve_key_files_are_not_overwritten(keys):
    with pytest.raises(FileExistsError):
        generate_keys(keys, ["server"])
    assert oct((keys / "server.key_secret").stat().st_mode & 0o777) == "0o600"
