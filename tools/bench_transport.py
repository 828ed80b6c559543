"""`headcast bench transport`: one-way latency and message rate of ZeroMQ against plain UDP.

The sender runs in its own process (as a capture node would); both processes stamp with the
system-wide monotonic clock, so one-way latency is ``t_receive - t_send`` without calibration.
Every configuration runs in the same invocation so the ZeroMQ/UDP ratios compare like with like.
"""
from __future__ import annotations

import multiprocessing as mp
import socket
import struct
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import zmq

from core.percentiles import percentiles
from tools.bench_common import write_json

_STAMP = struct.Struct("<qII")  # t_send_ns, seq, stream index


@dataclass(frozen=True)
class Case:
    transport: str  # "zmq-tcp" | "zmq-ipc" | "udp"
    size: int  # bytes per message
    streams: int  # concurrent senders (sockets) at rate_hz each
    rate_hz: float  # per stream; 0 = as fast as possible (message-rate test)
    seconds: float


@dataclass
class CaseResult:
    case: Case
    sent: int
    received: int
    latency_ms: dict  # p50 / p95 / p99 / max
    rate_msgs_per_s: float


def _endpoint(transport: str, tmpdir: str, port: int) -> str:
    if transport == "zmq-tcp":
        return f"tcp://127.0.0.1:{port}"
    if transport == "zmq-ipc":
        return f"ipc://{tmpdir}/bench.ipc"
    return f"127.0.0.1:{port}"


def _sender(case: Case, endpoint: str, ready, go) -> None:
    padding = b"\0" * max(0, case.size - _STAMP.size)
    if case.transport == "udp":
        host, port = endpoint.rsplit(":", 1)
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(case.streams)]

        def send(i, payload):
            socks[i].sendto(payload, (host, int(port)))
    else:
        ctx = zmq.Context()
        socks = []
        for _ in range(case.streams):
            s = ctx.socket(zmq.PUB)
            s.sndhwm = 1000 if case.rate_hz == 0 else 8
            s.connect(endpoint)
            socks.append(s)
        topics = [f"s{i}".encode() for i in range(case.streams)]

        def send(i, payload):
            try:
                socks[i].send_multipart([topics[i], payload], flags=zmq.NOBLOCK)
            except zmq.Again:
                pass
    ready.set()
    go.wait()
    time.sleep(0.3)  # ZeroMQ's slow joiner: let the connections settle before measuring
    t_end = time.monotonic() + case.seconds
    seq = 0
    if case.rate_hz == 0:
        while time.monotonic() < t_end:
            for i in range(case.streams):
                send(i, _STAMP.pack(time.monotonic_ns(), seq, i) + padding)
            seq += 1
    else:
        period = 1.0 / case.rate_hz
        t_next = time.monotonic()
        while t_next < t_end:
            now = time.monotonic()
            if now < t_next:
                time.sleep(t_next - now)
            # Streams are staggered over the period as independent capture nodes would be.
            for i in range(case.streams):
                send(i, _STAMP.pack(time.monotonic_ns(), seq, i) + padding)
                if case.streams > 1:
                    time.sleep(period / case.streams * 0.5)
            seq += 1
            t_next += period
    # End marker so the receiver stops without waiting for a timeout.
    for _ in range(3):
        for i in range(case.streams):
            send(i, _STAMP.pack(-1, seq, i) + padding)
        time.sleep(0.05)


def run_case(case: Case) -> CaseResult:
    ctxmp = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        if case.transport == "udp":
            rsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rsock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            rsock.bind(("127.0.0.1", 0))
            rsock.settimeout(0.5)
            endpoint = f"127.0.0.1:{rsock.getsockname()[1]}"

            def recv():
                try:
                    return rsock.recv(65536)
                except socket.timeout:
                    return None
        else:
            zctx = zmq.Context()
            rsock = zctx.socket(zmq.SUB)
            rsock.setsockopt(zmq.SUBSCRIBE, b"")
            rsock.rcvhwm = 1000
            if case.transport == "zmq-tcp":
                port = rsock.bind_to_random_port("tcp://127.0.0.1")
                endpoint = _endpoint(case.transport, tmp, port)
            else:
                endpoint = _endpoint(case.transport, tmp, 0)
                rsock.bind(endpoint)
            poller = zmq.Poller()
            poller.register(rsock, zmq.POLLIN)

            def recv():
                if not poller.poll(500):
                    return None
                return rsock.recv_multipart()[1]
        ready, go = ctxmp.Event(), ctxmp.Event()
        proc = ctxmp.Process(target=_sender, args=(case, endpoint, ready, go), daemon=True)
        proc.start()
        ready.wait(30)
        go.set()
        lat = []
        seen = set()
        ends = 0
        t_first = t_last = None
        hard_end = time.monotonic() + case.seconds + 15
        while time.monotonic() < hard_end:
            msg = recv()
            now = time.monotonic_ns()
            if msg is None:
                if not proc.is_alive():
                    break
                continue
            t_send, seq, idx = _STAMP.unpack_from(msg)
            if t_send < 0:
                ends += 1
                if ends >= case.streams:
                    break
                continue
            if (seq, idx) in seen:
                continue
            seen.add((seq, idx))
            lat.append(now - t_send)
            t_first = t_first or now
            t_last = now
        proc.join(10)
        if proc.is_alive():
            proc.kill()
        rsock.close()
        if case.transport != "udp":
            zctx.term()
    arr = np.array(lat, dtype=np.float64) / 1e6
    expected = int(case.seconds * case.rate_hz) * case.streams if case.rate_hz else None
    rate = (len(lat) - 1) * 1e9 / (t_last - t_first) if len(lat) > 1 and t_last > t_first else 0.0
    return CaseResult(case, expected if expected is not None else len(lat), len(lat), percentiles(arr), rate)


def default_cases(seconds: float) -> list[Case]:
    cases = []
    for transport in ("zmq-tcp", "zmq-ipc", "udp"):
        for size in (1024, 2048, 4096, 8192):
            cases.append(Case(transport, size, 1, 500.0, seconds))
        cases.append(Case(transport, 3000, 16, 60.0, seconds))  # 16 mp478 fp16 streams at 60 Hz
        cases.append(Case(transport, 4096, 1, 0.0, min(seconds, 1.0)))  # max message rate
    return cases


def register(sub) -> None:
    p = sub.add_parser("transport", help="ZeroMQ tcp/ipc vs UDP: one-way latency and message rate")
    p.add_argument("--json", type=Path, required=True, metavar="FILE")
    p.add_argument("--seconds", type=float, default=2.0, help="seconds per latency configuration")
    p.set_defaults(func=run)


def run(args) -> int:
    results = []
    print(f"{'transport':<9}{'bytes':>7}{'streams':>8}{'rate Hz':>8}{'recv/sent':>12}"
          f"{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'msg/s':>10}", flush=True)
    from core.progress import progress_bar, writes_above_bars

    cases = default_cases(args.seconds)
    with progress_bar(total=len(cases), desc="transport", unit="case") as bar:
        for case in cases:
            r = run_case(case)
            results.append(r)
            bar.update(1)
            rate = "max" if case.rate_hz == 0 else f"{case.rate_hz:.0f}"
            lm = r.latency_ms
            with writes_above_bars():
                print(f"{case.transport:<9}{case.size:>7}{case.streams:>8}{rate:>8}{f'{r.received}/{r.sent}':>12}"
                      f"{lm['p50']:>9.3f}{lm['p99']:>9.3f}{lm['max']:>9.3f}{r.rate_msgs_per_s:>10.0f}", flush=True)
    ratios = {}
    for r in results:
        if r.case.transport == "udp":
            continue
        base = next(b for b in results if b.case.transport == "udp" and b.case.size == r.case.size
                    and b.case.streams == r.case.streams and b.case.rate_hz == r.case.rate_hz)
        key = f"{r.case.transport}/{r.case.size}B/{r.case.streams}x{r.case.rate_hz or 'max'}"
        if r.case.rate_hz:
            ratios[key] = {"p50_ratio_vs_udp": r.latency_ms["p50"] / max(base.latency_ms["p50"], 1e-9),
                           "p99_ratio_vs_udp": r.latency_ms["p99"] / max(base.latency_ms["p99"], 1e-9)}
        else:
            ratios[key] = {"rate_ratio_vs_udp": r.rate_msgs_per_s / max(base.rate_msgs_per_s, 1e-9)}
    print("\nZeroMQ / UDP ratios (latency: lower is better; rate: higher is better)")
    for k, v in ratios.items():
        print(f"  {k:<28} " + "  ".join(f"{n}={x:.2f}" for n, x in v.items()))
    target = next(r for r in results if r.case.transport == "zmq-tcp" and r.case.streams == 16)
    verdict = target.latency_ms["p99"] <= 1.0
    print(f"\ntarget zmq-tcp 16 streams x 60 Hz p99 <= 1 ms: {target.latency_ms['p99']:.3f} ms "
          f"{'MET' if verdict else 'NOT MET'}")
    write_json(args.json, {
        "benchmark": "transport",
        "results": [{**asdict(r.case), "sent": r.sent, "received": r.received, "latency_ms": r.latency_ms,
                     "rate_msgs_per_s": r.rate_msgs_per_s} for r in results],
        "ratios_vs_udp": ratios,
        "target_tcp16x60_p99_le_1ms": verdict,
    })
    print(f"wrote {args.json}")
    return 0
