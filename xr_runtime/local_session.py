"""Run a capture node and a render node as two real processes on this machine.

`headcast demo` and `headcast bench latency` both need the whole pipeline — camera or clip →
capture process → ZeroMQ → render process → display — with nothing left running afterwards, even
when interrupted: each node gets its own process group, which is terminated, then killed.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import HeadcastError


@dataclass(frozen=True)
class SessionConfig:
    avatar: Path
    source: str  # camera index or video file
    out_dir: Path
    seconds: float
    stream: str = "driver"
    backend: str = "auto"
    device: str = "cpu"
    realtime: bool = True  # pace files at their frame rate
    loop: bool = True
    video: bool = True  # headless: write an MP4
    latency_trace: bool = False
    extra_render_args: tuple[str, ...] = ()
    extra_capture_args: tuple[str, ...] = ()
    scene: Path | None = None  # a scene file instead of the single `avatar` 1 m ahead
    echo: bool = True  # print the render node's output


@dataclass
class SessionResult:
    render_stats: dict
    capture_stats: dict | None
    video: Path | None
    latency_trace: Path | None
    render_log: list[str] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(grace_s)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def run_session(cfg: SessionConfig) -> SessionResult:
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    render_json = cfg.out_dir / "render.json"
    capture_json = cfg.out_dir / "capture.json"
    trace = cfg.out_dir / "latency_trace.json" if cfg.latency_trace else None
    video = cfg.out_dir / "demo.mp4" if cfg.video else None
    for stale in (render_json, capture_json, trace, video):
        if stale is not None and stale.exists():
            stale.unlink()  # never report an earlier run's numbers as this one's
    cli = [sys.executable, "-m", "tools.cli"]
    what = ["--scene", str(cfg.scene)] if cfg.scene is not None else ["--avatar", str(cfg.avatar), "--stream", cfg.stream]
    render_cmd = cli + ["render", *what, "--bind", endpoint,
                        "--backend", cfg.backend, "--seconds", str(cfg.seconds), "--json", str(render_json),
                        "--device", cfg.device, *cfg.extra_render_args]
    if video is not None:
        render_cmd += ["--out", str(video)]
    if trace is not None:
        render_cmd += ["--latency-trace", str(trace)]
    capture_cmd = cli + ["capture", "--source", cfg.source, "--connect", endpoint, "--stream", cfg.stream,
                         "--stats-json", str(capture_json), *cfg.extra_capture_args]
    if cfg.realtime:
        capture_cmd.append("--realtime")
    if cfg.loop:
        capture_cmd.append("--loop")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log: list[str] = []
    render = capture = None

    def echo(line: str) -> None:
        log.append(line.rstrip())
        if cfg.echo:
            print(f"  render | {line.rstrip()}", flush=True)

    try:
        render = subprocess.Popen(render_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                  start_new_session=True, env=env)
        deadline = time.monotonic() + 300  # loading an avatar and building the engine
        while True:
            line = render.stdout.readline()
            if line:
                echo(line)
                if "listening on" in line:
                    break
            elif render.poll() is not None or time.monotonic() > deadline:
                raise HeadcastError("render node did not start:\n" + "\n".join(log[-20:]))
        capture = subprocess.Popen(capture_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   start_new_session=True, env=env)
        for line in render.stdout:
            echo(line)
        render.wait(timeout=cfg.seconds + 120)
    except subprocess.TimeoutExpired as exc:
        raise HeadcastError("render node did not finish in time") from exc
    finally:
        stop_process(capture)  # SIGTERM: the capture node sends its end-of-stream and writes stats
        stop_process(render)
    if render.returncode != 0:
        raise HeadcastError(f"render node exited with {render.returncode}:\n" + "\n".join(log[-20:]))
    if not render_json.exists():
        raise HeadcastError("render node wrote no statistics")
    cap_stats = json.loads(capture_json.read_text()) if capture_json.exists() else None
    return SessionResult(json.loads(render_json.read_text()), cap_stats,
                         video if video is not None and video.exists() else None, trace, log)
