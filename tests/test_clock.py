"""Clock calibration: known injected offsets and drifts are recovered, also under asymmetric delays."""
from __future__ import annotations

import random
import threading
import time

import numpy as np
import pytest
import zmq

from calibration.clock import ClockEstimator, EstimatorConfig, Exchange
from calibration.clock_service import ClockClient, ClockServer, clock_endpoint_for

OFFSET = 3_700_000_123  # remote − local, ns
DRIFT = 80e-6  # 80 ppm: a poor crystal


def remote_time(t_local: float, offset=OFFSET, drift=DRIFT, ref=0.0) -> float:
    return t_local + offset + drift * (t_local - ref)


def simulate(n, span_s, fwd, back, seed=0, proc_ns=20_000):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t1 = i * span_s * 1e9 / n
        d_fwd, d_back = fwd(rng), back(rng)
        t2 = remote_time(t1 + d_fwd)
        t3 = t2 + proc_ns
        t4 = t1 + d_fwd + proc_ns + d_back  # processing time measured on the remote clock: close enough
        out.append(Exchange(int(t1), int(t2), int(t3), int(t4)))
    return out


def test_symmetric_jitter_recovers_offset_and_drift():
    est = ClockEstimator()
    for ex in simulate(2000, 20.0, lambda r: 100_000 + r.expovariate(1 / 300_000), lambda r: 100_000 + r.expovariate(1 / 300_000)):
        est.add(ex)
    m = est.estimate()
    t_check = 20e9
    assert abs(m.to_remote(int(t_check)) - remote_time(t_check)) < 50_000  # 50 µs
    assert abs(m.drift_ppm - DRIFT * 1e6) < 5


def test_asymmetric_queueing_is_filtered_by_min_delay():
    # Forward path often waits in a queue (milliseconds); the return path is quick.
    fwd = lambda r: 150_000 + (r.expovariate(1 / 3_000_000) if r.random() < 0.8 else 0)
    back = lambda r: 150_000 + r.expovariate(1 / 50_000)
    samples = simulate(3000, 30.0, fwd, back, seed=1)
    est = ClockEstimator()
    for ex in samples:
        est.add(ex)
    m = est.estimate()
    t_check = 30e9
    err = abs(m.to_remote(int(t_check)) - remote_time(t_check))
    naive = np.mean([ex.offset_ns - DRIFT * ((ex.t1 + ex.t4) / 2) for ex in samples]) - OFFSET
    assert err < 100_000, err  # 0.1 ms
    assert abs(naive) > 10 * err  # averaging everything would be biased by the queueing
    assert abs(m.drift_ppm - DRIFT * 1e6) < 5
    assert m.uncertainty_ns < 500_000


def test_impossible_exchanges_ignored_and_mapping_inverts():
    est = ClockEstimator(EstimatorConfig(min_span_for_drift_s=1e9))
    est.add(Exchange(10, 5, 4, 20))  # remote send before receive
    est.add(Exchange(10, 100, 110, 5))  # receive before send
    assert est.estimate() is None
    est.add(Exchange(1000, 501_000, 501_100, 1300))
    m = est.estimate()
    assert m.offset_ns == pytest.approx(500_000 - 0 + (100 - 300) / 2 + 0, abs=1)
    assert m.to_local(m.to_remote(123_456_789)) == 123_456_789


class SkewedClock:
    def __init__(self, offset=OFFSET, drift=DRIFT):
        self.t0 = time.monotonic_ns()
        self.offset, self.drift = offset, drift

    def __call__(self) -> int:
        t = time.monotonic_ns()
        return int(t + self.offset + self.drift * (t - self.t0))

    def truth(self, t_local: int) -> int:
        return int(t_local + self.offset + self.drift * (t_local - self.t0))


def test_real_sockets_recover_injected_offset_and_report_to_server():
    clock = SkewedClock()
    with ClockServer("tcp://127.0.0.1:*", clock=clock) as server, \
            ClockClient(server.endpoint, "cam1") as client:
        m = client.measure(count=80, interval_s=0.002)
        now = time.monotonic_ns()
        assert abs(m.to_remote(now) - clock.truth(now)) < 1_000_000  # < 1 ms on loopback
        client.ping()  # carries the estimate to the server
        assert server.mapping_for("cam1") is not None
        reported = server.mapping_for("cam1")
        assert abs(reported.to_remote(now) - clock.truth(now)) < 1_000_000
        assert server.answered >= 81


class DelayingRelay:
    """A real ZeroMQ relay (ROUTER ↔ DEALER) that holds client→server messages for a random time,
    creating the asymmetric path delays of a congested uplink."""

    def __init__(self, server_endpoint: str, mean_delay_s=0.004, seed=2):
        self.ctx = zmq.Context()
        self.front = self.ctx.socket(zmq.ROUTER)
        port = self.front.bind_to_random_port("tcp://127.0.0.1")
        self.endpoint = f"tcp://127.0.0.1:{port}"
        self.back = self.ctx.socket(zmq.DEALER)
        self.back.connect(server_endpoint)
        self.rng = random.Random(seed)
        self.mean = mean_delay_s
        self.stop = threading.Event()
        self.pending = []
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        poller = zmq.Poller()
        poller.register(self.front, zmq.POLLIN)
        poller.register(self.back, zmq.POLLIN)
        ident = None
        while not self.stop.is_set():
            events = dict(poller.poll(1))
            now = time.monotonic()
            if self.front in events:
                ident, msg = self.front.recv_multipart()
                delay = self.rng.expovariate(1 / self.mean) if self.rng.random() < 0.8 else 0.0
                self.pending.append((now + delay, msg))
            for item in [p for p in self.pending if p[0] <= now]:
                self.back.send(item[1])
                self.pending.remove(item)
            if self.back in events:
                reply = self.back.recv_multipart()[-1]
                self.front.send_multipart([ident, reply])

    def close(self):
        self.stop.set()
        self.thread.join(2)
        self.front.close(0)
        self.back.close(0)
        self.ctx.term()


def test_real_sockets_with_asymmetric_delay():
    clock = SkewedClock(offset=-1_234_567_890, drift=0.0)
    with ClockServer("tcp://127.0.0.1:*", clock=clock) as server:
        relay = DelayingRelay(server.endpoint)
        try:
            with ClockClient(relay.endpoint, "cam2") as client:
                m = client.measure(count=150, interval_s=0.002)
                samples = list(client.estimator._samples)
        finally:
            relay.close()
    now = time.monotonic_ns()
    err = abs(m.to_remote(now) - clock.truth(now))
    naive_err = abs(np.mean([s.offset_ns for s in samples]) - clock.offset)
    assert err < 1_000_000, err
    assert naive_err > 2 * err, (naive_err, err)


def test_malformed_pings_are_counted_not_fatal():
    with ClockServer("tcp://127.0.0.1:*") as server:
        ctx = zmq.Context.instance()
        s = ctx.socket(zmq.DEALER)
        s.connect(server.endpoint)
        try:
            s.send(b"junk")
            s.send(b"HCK1" + b"\0" * 500)  # over maxmsgsize: dropped by ZeroMQ
            with ClockClient(server.endpoint) as client:
                assert client.ping(timeout_s=2) is not None
            # The junk travels on its own connection, which may complete after the client's ping.
            deadline = time.monotonic() + 3
            while server.malformed < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert server.malformed >= 1
        finally:
            s.close(0)


def test_clock_endpoint_convention():
    assert clock_endpoint_for("tcp://127.0.0.1:5555") == "tcp://127.0.0.1:5556"
    with pytest.raises(ValueError):
        clock_endpoint_for("ipc:///tmp/x")


def test_calibrate_clock_cli_against_a_serving_peer(tmp_path):
    import json
    import socket
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = f"tcp://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "tools.cli", "calibrate", "clock", "--serve", ep, "--seconds", "20"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert "clock service" in server.stdout.readline()
        out = tmp_path / "clock.json"
        r = subprocess.run([sys.executable, "-m", "tools.cli", "calibrate", "clock", "--peer", ep, "--count", "60",
                            "--json", str(out)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        m = json.loads(out.read_text())["mapping"]
        assert abs(m["offset_ns"]) < 1_000_000  # same host: the true offset is zero
        assert m["samples"] == 60
    finally:
        server.kill()
        server.wait()
    dead = subprocess.run([sys.executable, "-m", "tools.cli", "calibrate", "clock", "--peer", ep, "--count", "2"],
                          capture_output=True, text=True, timeout=60)
    assert dead.returncode == 2 and "no answer" in dead.stderr
