"""Real `headcast` processes for the hostile-input tests: start, wait for their endpoint, stop."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import zmq

from streaming import protocol
from streaming.protocol import FeatureFrame, FeatureKind, Flags

HEADCAST = [sys.executable, "-m", "tools.cli"]
REPO = Path(__file__).resolve().parents[1]


def free_port(pair: bool = True) -> int:
    """A free TCP port on loopback (and, with `pair`, the next one free too: the clock service's)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not pair:
            return port
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port pair")


def run_headcast(args: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(HEADCAST + args, capture_output=True, text=True, timeout=timeout, cwd=REPO, **kw)


def assert_no_traceback(text: str) -> None:
    assert "Traceback (most recent call last)" not in text, text[-3000:]


class Node:
    """A `headcast listen` or `headcast render` process, started and waited for ("listening on")."""

    def __init__(self, args: list[str], json_path: Path | None = None, ready: str = "listening on",
                 timeout: float = 60.0):
        self.json_path = json_path
        self.proc = subprocess.Popen(HEADCAST + args + (["--json", str(json_path)] if json_path else []),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
        self.lines: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            if ready in line:
                return
        out, err = self._finish(5)
        raise AssertionError(f"{args[0]} never said {ready!r}: rc {self.proc.returncode}\n{out}\n{err}")

    def _finish(self, timeout: float) -> tuple[str, str]:
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        self.stdout = "".join(self.lines) + (out or "")
        self.stderr = err or ""
        return self.stdout, self.stderr

    def wait(self, timeout: float = 60.0) -> dict | None:
        """Waits for the process to end; returns its --json statistics (None without)."""
        self._finish(timeout)
        assert_no_traceback(self.stderr)
        assert self.proc.returncode == 0, self.stderr[-3000:]
        return json.loads(self.json_path.read_text()) if self.json_path else None

    def terminate(self, timeout: float = 30.0) -> dict | None:
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


class RawPublisher:
    """A PUB socket sending whatever bytes a test wants (optionally as a CURVE client)."""

    def __init__(self, endpoint: str, curve_client=None, hwm: int = 1000):
        from streaming.sockets import SocketOptions, open_socket

        self.socket = open_socket(zmq.PUB, endpoint, bind=False, curve_client=curve_client,
                                  options=SocketOptions(linger_ms=500, sndhwm=hwm))
        self.sock = self.socket.sock

    def send(self, parts: list[bytes]) -> None:
        self.sock.send_multipart(parts)

    def frame(self, frame: FeatureFrame, t_send_ns: int | None = None) -> None:
        self.send(protocol.encode(frame, time.monotonic_ns() if t_send_ns is None else t_send_ns))

    def close(self) -> None:
        self.socket.close()

    def __enter__(self) -> "RawPublisher":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def mp478(stream: str, seq: int, value: float = 0.05, t_ns: int | None = None, flags=Flags.NONE,
          kind: FeatureKind = FeatureKind.MP478) -> FeatureFrame:
    t = time.monotonic_ns() if t_ns is None else t_ns
    if kind is FeatureKind.NONE:
        feats = np.zeros((0, 0), np.float32)
    else:
        feats = np.full(protocol.FEATURE_SHAPES[kind], value, np.float32)
    return FeatureFrame(stream, seq, kind, feats, t, t, flags=flags)


def stream_frames(pub: RawPublisher, stream: str, seconds: float, rate_hz: float = 60.0, start_seq: int = 0,
                  during=None, value: float = 0.05) -> int:
    """Sends a legitimate stream for `seconds`; `during(elapsed_s, seq)` runs after each frame
    (a test's hostile act). Returns the number of frames sent."""
    t0 = time.monotonic()
    seq = start_seq
    while time.monotonic() - t0 < seconds:
        pub.frame(mp478(stream, seq, value))
        seq += 1
        if during is not None:
            during(time.monotonic() - t0, seq)
        time.sleep(max(0.0, t0 + (seq - start_seq) / rate_hz - time.monotonic()))
    return seq - start_seq


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def environ_without_display() -> dict:
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    return env
