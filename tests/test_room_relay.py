"""The room's stream relay over real sockets: forwarding through XSUB/XPUB, subscriptions honoured,
the sender bound to its CURVE key (a spoofed stream id refused and counted), an unauthorised key
getting nothing in or out, malformed and unregistered streams refused."""
from __future__ import annotations

import time

import pytest
import zmq
from _processes import RawPublisher, free_port, mp478

from streaming import protocol
from streaming.room_relay import RelayConfig, StreamRelay, key_names_from_dir
from streaming.sockets import CurveClient, CurveServer, SocketOptions, generate_keys, open_socket


@pytest.fixture
def keys(tmp_path):
    generate_keys(tmp_path / "keys", ["server"])
    generate_keys(tmp_path / "keys" / "allowed", ["alice", "bob"])
    generate_keys(tmp_path / "keys" / "strangers", ["mallory"])
    return tmp_path / "keys"


def _client(keys, name, where="allowed"):
    return CurveClient(keys / where / f"{name}.key_secret", keys / "server.key")


def _relay(keys=None):
    port = free_port()
    cfg = RelayConfig(f"tcp://127.0.0.1:{port}", f"tcp://127.0.0.1:{port + 1}",
                      curve=CurveServer(keys / "server.key_secret", keys / "allowed") if keys else None)
    names = key_names_from_dir(keys / "allowed") if keys else {}
    relay = StreamRelay(cfg, names).start()
    relay.set_owners({"alice": "alice", "bob": "bob"})
    return relay, cfg


def _sub(cfg, curve=None, topics=(b"",)):
    s = open_socket(zmq.SUB, cfg.streams_out, bind=False, curve_client=curve, options=SocketOptions(rcvhwm=1000))
    for t in topics:
        s.sock.setsockopt(zmq.SUBSCRIBE, t)
    return s


def _drain(sub, seconds: float) -> list[protocol.FeatureFrame]:
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if sub.sock.poll(20):
            out.append(protocol.decode(sub.sock.recv_multipart()))
    return out


def _send_for(pub, frames, seconds=0.6):
    """PUB/SUB joins late (slow joiner): send each frame repeatedly for a while, with fresh seqs."""
    t0, seq = time.monotonic(), 0
    while time.monotonic() - t0 < seconds:
        for stream in frames:
            pub.frame(mp478(stream, seq))
        seq += 1
        time.sleep(1 / 60)
    return seq


def test_owned_streams_are_forwarded_and_subscriptions_filter(tmp_path):
    relay, cfg = _relay()
    all_sub, bob_only = _sub(cfg), _sub(cfg, topics=(b"bob",))
    alice = RawPublisher(cfg.streams_in)
    try:
        time.sleep(0.3)
        sent = _send_for(alice, ["alice"])
        got_all, got_bob = _drain(all_sub, 0.3), _drain(bob_only, 0.05)
        assert len(got_all) >= sent // 2 and {f.stream_id for f in got_all} == {"alice"}
        assert got_bob == []       # XPUB filtered it: bob's subscriber never sees alice's frames
        c = relay.counters()
        assert c.forwarded >= len(got_all) and c.subscriptions >= 2 and c.accounted == c.messages
    finally:
        alice.close(), all_sub.close(), bob_only.close(), relay.stop()


def test_unregistered_and_malformed_messages_are_refused_and_counted(tmp_path):
    relay, cfg = _relay()
    sub = _sub(cfg)
    pub = RawPublisher(cfg.streams_in)
    try:
        time.sleep(0.3)
        _send_for(pub, ["carol"], 0.3)                       # no slot holds this stream
        good = protocol.encode(mp478("alice", 1))
        for _ in range(20):
            pub.send([b"alice", good[1][:-8]])                # truncated payload
            pub.send([b"alice", protocol.encode(mp478("bob", 1))[1]])   # topic alice, header bob
            pub.send([b"alice"])                              # one part
        assert _drain(sub, 0.4) == []
        c = relay.counters()
        assert c.unknown_stream > 0 and c.malformed >= 40 and c.forwarded == 0
        assert c.accounted == c.messages
    finally:
        pub.close(), sub.close(), relay.stop()


def test_curve_binds_senders_to_their_streams_and_strangers_get_nothing(tmp_path, keys):
    relay, cfg = _relay(keys)
    bob_sub = _sub(cfg, _client(keys, "bob"))
    mallory_sub = _sub(cfg, _client(keys, "mallory", "strangers"))
    alice = RawPublisher(cfg.streams_in, curve_client=_client(keys, "alice"))
    bob = RawPublisher(cfg.streams_in, curve_client=_client(keys, "bob"))
    mallory = RawPublisher(cfg.streams_in, curve_client=_client(keys, "mallory", "strangers"))
    try:
        time.sleep(0.5)
        t0, seq = time.monotonic(), 0
        while time.monotonic() - t0 < 0.8:
            alice.frame(mp478("alice", seq, 0.05))
            bob.frame(mp478("alice", 10_000 + seq, 0.9))    # bob publishing under alice's stream id
            mallory.frame(mp478("bob", seq, 0.5))           # a key not on the allow-list
            seq += 1
            time.sleep(1 / 60)
        got = _drain(bob_sub, 0.3)
        assert got and all(f.stream_id == "alice" and f.seq < 10_000 for f in got)   # only alice's own
        assert _drain(mallory_sub, 0.1) == []               # nothing out to an unknown key
        c = relay.counters()
        assert c.spoofed >= seq // 2 and c.spoofed_by_sender == {"bob": c.spoofed}
        assert c.unknown_sender == 0                         # mallory never got past ZAP: nothing in
        assert c.messages == c.forwarded + c.spoofed and c.accounted == c.messages
    finally:
        for s in (alice, bob, mallory, bob_sub, mallory_sub):
            s.close()
        relay.stop()


def test_bench_room_runs_and_writes_its_json(tmp_path):
    import json

    from _processes import run_headcast

    out = tmp_path / "room.json"
    r = run_headcast(["bench", "room", "--json", str(out), "--seconds", "0.6", "--repeats", "1",
                      "--participants", "2", "--rooms", "2x2"], timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    data = json.loads(out.read_text())
    modes = {(x["rooms"], x["mode"]) for x in data["results"]}
    assert modes == {(1, "direct"), (1, "proxy"), (1, "relay"), (2, "direct"), (2, "proxy"), (2, "relay")}
    relay = next(x for x in data["results"] if x["mode"] == "relay" and x["rooms"] == 1)
    assert relay["delivered"] >= 0.9 * relay["deliveries_expected"] > 0 and relay["relay"]["refused"] == 0
    assert data["comparisons"][0]["relay_cpu_us_per_message"] > 0


def test_the_relay_check_passes_any_minor_version_and_longer_headers_but_not_another_major():
    """Minor protocol versions may append header fields (docs/PROTOCOL.md on main): the relay must
    forward them, not count them malformed; a frame of another major version it refuses."""
    import struct

    topic, body = protocol.encode(mp478("alice", 1))
    protocol.check_framing(topic, body)
    extra = 8
    header = bytearray(body[:protocol.HEADER_SIZE])
    struct.pack_into("<HH", header, 4, 0x0101, protocol.HEADER_SIZE + extra)     # version 1.1, longer header
    longer = bytes(header) + b"\0" * extra + body[protocol.HEADER_SIZE:]
    protocol.check_framing(topic, longer)
    for version in (0x0002, 0x0100 | 2):
        other = bytearray(body)
        struct.pack_into("<H", other, 4, version)
        with pytest.raises(protocol.ProtocolError):
            protocol.check_framing(topic, bytes(other))
    with pytest.raises(protocol.ProtocolError):
        protocol.check_framing(topic, longer[:-4])
