"""The ZMTP mechanism probe and the refusal reason it makes deterministic, against real sockets."""
from __future__ import annotations

import socket
import threading

import pytest
import zmq

from streaming.sockets import CurveClient, CurveServer, generate_keys, open_socket
from streaming.zmtp_probe import peer_mechanism


@pytest.fixture
def keys(tmp_path):
    generate_keys(tmp_path, ["server", "client"])
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "client.key").write_bytes((tmp_path / "client.key").read_bytes())
    return tmp_path


def _bound(kind, keys=None, endpoint="tcp://127.0.0.1:0"):
    server = CurveServer(keys / "server.key_secret", keys / "allowed") if keys is not None else None
    return open_socket(kind, endpoint, bind=True, curve_server=server)


def test_probe_names_the_mechanism_of_curve_and_plaintext_peers(keys, tmp_path):
    with _bound(zmq.ROUTER, keys) as curve, _bound(zmq.SUB) as plain, \
            _bound(zmq.ROUTER, endpoint=f"ipc://{tmp_path}/probe.ipc") as over_ipc:
        assert peer_mechanism(curve.endpoint) == "CURVE"
        assert peer_mechanism(plain.endpoint) == "NULL"
        assert peer_mechanism(over_ipc.endpoint) == "NULL"
        # The probe is a question, not a connection that stays: the peer keeps serving real clients.
        with open_socket(zmq.DEALER, curve.endpoint, bind=False,
                         curve_client=CurveClient(keys / "client.key_secret", keys / "server.key")) as c:
            c.sock.send(b"hello")
            assert curve.sock.poll(3000)
            assert curve.sock.recv_multipart()[1] == b"hello"


def test_probe_answers_none_for_what_is_not_a_zmtp_peer():
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    assert peer_mechanism(f"tcp://127.0.0.1:{port}", timeout_s=0.5) is None  # nothing listens
    assert peer_mechanism("inproc://x") is None and peer_mechanism("tcp://*:5555") is None
    assert peer_mechanism("tcp://127.0.0.1:notaport") is None

    with socket.socket() as srv:  # speaks HTTP, then hangs: None within the timeout, not a hang
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        port = srv.getsockname()[1]
        held = []

        def answer():
            conn, _ = srv.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + b"x" * 8)
            held.append(conn)

        t = threading.Thread(target=answer, daemon=True)
        t.start()
        assert peer_mechanism(f"tcp://127.0.0.1:{port}", timeout_s=0.5) is None
        t.join(2)
        for c in held:
            c.close()


@pytest.mark.parametrize("client_curve", [False, True])
def test_every_security_mismatch_is_named_as_such(keys, client_curve):
    """Twenty fresh connections each way: before the probe, some of them (on a loaded host, most)
    were reported only as "the peer closed the connection"."""
    with _bound(zmq.ROUTER, None if client_curve else keys) as server:
        client_keys = CurveClient(keys / "client.key_secret", keys / "server.key") if client_curve else None
        for _ in range(20):
            with open_socket(zmq.DEALER, server.endpoint, bind=False, curve_client=client_keys) as c:
                mon = c.handshake_monitor()
                assert mon.wait(5.0) is False and mon.refused
                mon.settle()
                assert mon.failure.startswith("security mismatch"), mon.failure
                assert ("drop --server-key" in mon.failure) == client_curve
                assert "--server-key" in mon.failure


def test_a_refusal_that_is_not_a_mismatch_keeps_its_own_reason(keys, tmp_path):
    generate_keys(tmp_path / "other", ["stranger"])
    with _bound(zmq.ROUTER, keys) as server:
        stranger = CurveClient(tmp_path / "other" / "stranger.key_secret", keys / "server.key")
        with open_socket(zmq.DEALER, server.endpoint, bind=False, curve_client=stranger) as c:
            mon = c.handshake_monitor()
            assert mon.wait(5.0) is False
            mon.settle()
            assert "refused this client's CURVE key" in mon.failure, mon.failure
