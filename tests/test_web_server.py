"""The live page's server on real sockets (aiohttp client): loopback by default, a token beyond it,
Host / Origin checks, the viewer cap, a read-only socket, and a slow viewer that never slows the
render thread — it only misses frames."""
from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import aiohttp
import numpy as np
import pytest

from core.errors import UsageError
from xr_runtime.spectator.tap import SpectatorFrame
from xr_runtime.web.feed import FeedConfig, JpegFeed
from xr_runtime.web.server import FRAME_HEADER, IN_FLIGHT, WebConfig, WebServer

HEADCAST = [sys.executable, "-m", "tools.cli"]


class _Node:
    """What the dashboard reads of a render node, from the real recorder and frame statistics."""

    def __init__(self):
        from xr_runtime.latency.frame_stats import FrameStats
        from xr_runtime.latency.recorder import LatencyRecorder

        self.latency = LatencyRecorder()
        self.stats = FrameStats()

    def stream_states(self):
        return {}


def _server(**config) -> WebServer:
    from xr_runtime.web.dashboard import Dashboard

    cfg = WebConfig(port=0, **config)
    feed = JpegFeed(FeedConfig(max_fps=0))
    return WebServer(cfg, feed, Dashboard(_Node())).start()


def _frame(index: int) -> SpectatorFrame:
    image = np.zeros((48, 64, 4), np.uint8)
    image[..., 0] = (index * 37) % 255
    now = time.monotonic_ns()
    return SpectatorFrame(image, index, now, now, now)


def _feed_frames(server: WebServer, count: int, period_s: float) -> list[float]:
    """Plays the render thread: offers a frame whenever the feed wants one; returns call times (ms)."""
    costs = []
    for i in range(count):
        t = time.perf_counter()
        if server.feed.wants_frame(time.monotonic_ns()):
            server.feed.offer(_frame(i))
        costs.append((time.perf_counter() - t) * 1e3)
        time.sleep(period_s)
    return costs


def _base(server: WebServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def test_config_keeps_the_page_on_loopback_unless_asked_and_then_needs_a_token():
    assert WebConfig.parse("8080").host == "127.0.0.1" and WebConfig.parse("8080").token is None
    assert WebConfig.parse("[::1]:9000").host == "::1"
    with pytest.raises(UsageError, match="--web-public"):
        WebConfig.parse("0.0.0.0:8080")
    public = WebConfig.parse("0.0.0.0:8080", public=True)
    assert public.token and len(public.token) >= 16
    assert WebConfig.parse("0.0.0.0:8080", public=True, token="t" * 20).token == "t" * 20
    for bad in ("x", "70000", "host:"):
        with pytest.raises(UsageError):
            WebConfig.parse(bad)
    r = subprocess.run(HEADCAST + ["render", "--avatar", "nowhere", "--web", "0.0.0.0:8080", "--frames", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--web-public" in r.stderr and "Traceback" not in r.stderr


def test_pages_headers_host_check_and_token():
    async def run(plain: WebServer, guarded: WebServer):
        async with aiohttp.ClientSession() as s:
            async with s.get(_base(plain) + "/") as r:
                assert r.status == 200 and "Headcast render node" in await r.text()
                assert "default-src 'self'" in r.headers["Content-Security-Policy"]
                assert r.headers["Referrer-Policy"] == "no-referrer"
            async with s.get(_base(plain) + "/app.js") as r:
                assert r.status == 200 and "createImageBitmap" in await r.text()
            # A DNS-rebinding page reaches a loopback server under its own name: refused.
            async with s.get(_base(plain) + "/", headers={"Host": f"evil.example:{plain.port}"}) as r:
                assert r.status == 421
            async with s.get(_base(guarded) + "/") as r:
                assert r.status == 403
            async with s.get(_base(guarded) + "/?token=wrong-token-wrong-token") as r:
                assert r.status == 403
            async with s.get(_base(guarded) + f"/?token={guarded.config.token}") as r:
                assert r.status == 200
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(_base(guarded) + "/ws")
            assert e.value.status == 403
            ws = await s.ws_connect(_base(guarded) + f"/ws?token={guarded.config.token}")
            hello = json.loads((await ws.receive()).data)
            assert hello["type"] == "hello"
            await ws.close()
            # A page on another origin may not open the socket (cross-site WebSocket hijacking).
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(_base(plain) + "/ws", headers={"Origin": "http://evil.example"})
            assert e.value.status == 403

    plain, guarded = _server(), _server(token="a-token-of-twenty-chars")
    try:
        asyncio.run(run(plain, guarded))
    finally:
        plain.close()
        guarded.close()
        plain.feed.close()
        guarded.feed.close()
    assert plain.counters.refused_host == 2 and guarded.counters.refused_auth == 3


def test_viewer_cap_and_the_read_only_socket():
    async def run(server: WebServer):
        async with aiohttp.ClientSession() as s:
            first = await s.ws_connect(_base(server) + "/ws")
            with pytest.raises(aiohttp.WSServerHandshakeError) as e:
                await s.ws_connect(_base(server) + "/ws")
            assert e.value.status == 503
            await first.send_str(json.dumps({"type": "move_avatar", "slot": 0, "position": [9, 9, 9]}))
            while True:
                msg = await first.receive(timeout=5)
                if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                    break
            assert first.close_code == 1003
            second = await s.ws_connect(_base(server) + "/ws")     # the slot is free again
            await second.close()

    server = _server(max_viewers=1)
    try:
        asyncio.run(run(server))
    finally:
        server.close()
        server.feed.close()
    assert server.counters.refused_busy == 1 and server.counters.bad_messages == 1
    assert server.counters.connections == 2


def test_a_slow_viewer_only_misses_frames_and_a_fast_one_gets_them_all():
    server = _server()
    received = {"slow": [], "fast": []}

    async def viewer(name: str, ack: bool, seconds: float):
        async with aiohttp.ClientSession() as s:
            ws = await s.ws_connect(_base(server) + "/ws")
            t_end = time.monotonic() + seconds
            while time.monotonic() < t_end:
                try:
                    msg = await ws.receive(timeout=0.2)
                except asyncio.TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    header = FRAME_HEADER.unpack(msg.data[:FRAME_HEADER.size])
                    assert header[0] == b"HCF1" and msg.data[FRAME_HEADER.size:][:2] == b"\xff\xd8"   # a JPEG
                    received[name].append(header[1])
                    if ack:
                        await ws.send_str(json.dumps({"type": "shown", "seq": header[1],
                                                      "shown_server_ns": time.monotonic_ns()}))
            await ws.close()

    async def both():
        await asyncio.gather(viewer("slow", False, 2.5), viewer("fast", True, 2.5))

    try:
        import threading

        clients = threading.Thread(target=asyncio.run, args=(both(),))
        clients.start()
        time.sleep(0.5)                                   # both connected
        costs = _feed_frames(server, 60, 1 / 40)          # the "render thread" at 40 Hz for 1.5 s
        clients.join(10)
    finally:
        server.close()
        server.feed.close()
    assert len(received["slow"]) == IN_FLIGHT, received["slow"]     # never acknowledges: two frames, then none
    assert len(received["fast"]) > 30, len(received["fast"])
    # The render side never waits on a viewer: asking and handing over cost microseconds (p90; a
    # busy host's scheduler can still stall any one call).
    assert float(np.percentile(costs, 90)) < 1.0, sorted(costs)[-5:]
    assert server.counters.frames_shown == len(received["fast"])
    latency = server.summary()["page_latency_ms"]["eye_drawn_to_shown"]
    assert latency["n"] == len(received["fast"]) and latency["p50"] > 0
