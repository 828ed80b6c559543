"""`headcast render --web [HOST:]PORT`: the render node's live page, served from its own thread.

    server = WebServer(WebConfig.parse("8080"), feed, dashboard).start()
    print(server.url)          # http://127.0.0.1:8080/ (with ?token=... where one is needed)
    ...
    server.close()

One page (`assets/web/`) and one WebSocket per viewer. The server sends the newest encoded
spectator frame (`feed.JpegFeed`) as a binary message — a 56-byte little-endian header (magic
"HCF1", seq, width, height, render frame index, display / grabbed / encoded / sent times in ns on
the render host's monotonic clock) followed by the JPEG — and the dashboard as JSON twice a
second. The page draws each frame on a canvas as soon as the browser has decoded it and
acknowledges it with the time it was shown, mapped onto the server's clock by ping/pong (the
sample with the shortest round trip wins, as in NTP). The acknowledgements bound what is in
flight per viewer (two frames): a viewer that falls behind skips frames instead of queueing
them, and its slowness never reaches the encoder or the frame loop. They also measure what the
page adds to latency, reported in the render statistics (`web.page_latency_ms`).

Why JPEG frames over a WebSocket (docs/BENCHMARKS.md, "Live page"): at the spectator size
encoding is a few milliseconds on its own thread and every frame is decoded and shown on
arrival — no jitter buffer (WebRTC) and no media-source buffering (fragmented MP4 in MSE), and
no dependency beyond aiohttp. It costs bandwidth (tens of kB a frame), which loopback and a LAN
carry easily.

Security: loopback by default. Any other address needs `public=True` (`--web-public`) and then
always a token (generated unless given), checked in constant time on every request; the Host
header must name the bound address (a DNS-rebinding page cannot reach a loopback server) and a
WebSocket's Origin must be the page's own. At most `max_viewers` sockets at once (503 after).
The page is read-only: clients may only send acknowledgements and pings (small JSON, validated);
anything else closes their socket. Nothing on the page can change the scene.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import secrets
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import WSMsgType, web

from core.errors import HeadcastError, UsageError
from core.percentiles import percentiles

log = logging.getLogger(__name__)

FRAME_MAGIC = b"HCF1"
FRAME_HEADER = struct.Struct("<4sIHHIqqqqq")   # magic, seq, w, h, index, display, grabbed, encoded, sent, reserved
assert FRAME_HEADER.size == 56
IN_FLIGHT = 2                 # frames sent but not yet acknowledged, per viewer
MAX_CLIENT_MESSAGE = 1024     # bytes: acknowledgements and pings are tiny
ASSETS = Path(__file__).resolve().parents[2] / "assets" / "web"
PAGES = {"/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"),
         "/style.css": ("style.css", "text/css")}
LOOPBACK_NAMES = ("localhost",)


class WebServerError(HeadcastError, OSError):
    """The page could not be served (address in use, assets missing)."""


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class WebConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    public: bool = False                  # allow a non-loopback address (then a token is required)
    token: str | None = None              # required from every client when set
    max_viewers: int = 4
    status_period_s: float = 0.5

    @staticmethod
    def parse(address: str, *, public: bool = False, token: str | None = None, max_viewers: int = 4) -> "WebConfig":
        """`[HOST:]PORT` → a checked config; a non-loopback host needs `public` and gets a token."""
        text = address.strip()
        host, _, port_text = text.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            port = int(port_text)
        except ValueError:
            raise UsageError(f"--web takes [HOST:]PORT, got {address!r}") from None
        if not 0 <= port <= 65535:
            raise UsageError(f"--web port {port} out of range")
        if max_viewers < 1:
            raise UsageError("--web-max-viewers must be at least 1")
        if not is_loopback(host):
            if not public:
                raise UsageError(f"--web {address}: serving the page beyond this machine needs --web-public "
                                 "(and then every viewer needs the printed token)")
            token = token or secrets.token_urlsafe(18)
        return WebConfig(host, port, public, token, max_viewers)


@dataclass
class PageLatency:
    """Per acknowledged frame, ms on the server's clock: where the page's share of latency goes."""

    rows: list = field(default_factory=list)   # (grab→collected, collected→encoded, encoded→sent, sent→shown, grab→shown)
    keep: int = 20_000

    def add(self, grab_to_collect, collect_to_encode, encode_to_send, send_to_shown) -> None:
        if len(self.rows) >= self.keep:
            del self.rows[: self.keep // 2]
        self.rows.append((grab_to_collect, collect_to_encode, encode_to_send, send_to_shown,
                          grab_to_collect + collect_to_encode + encode_to_send + send_to_shown))

    def summary(self) -> dict:
        names = ("readback", "encode", "send_queue", "network_decode_draw", "eye_drawn_to_shown")
        return {name: percentiles(r[i] for r in self.rows) for i, name in enumerate(names)}


@dataclass(eq=False)   # one per socket, kept in a set by identity
class _Viewer:
    ws: object
    peer: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_sent_seq: int = 0
    in_flight: dict = field(default_factory=dict)     # seq → EncodedFrame + sent_ns
    status: str | None = None
    pongs: list = field(default_factory=list)
    sent: int = 0
    shown: int = 0
    skipped: int = 0                                   # newer frames replaced one this viewer had not got


@dataclass
class WebCounters:
    viewers_max: int = 0
    connections: int = 0
    refused_busy: int = 0
    refused_auth: int = 0
    refused_host: int = 0
    bad_messages: int = 0
    frames_sent: int = 0
    frames_shown: int = 0
    frames_skipped: int = 0


class WebServer:
    def __init__(self, config: WebConfig, feed, dashboard) -> None:
        self.config = config
        self.feed = feed
        self.dashboard = dashboard
        self.counters = WebCounters()
        self.page_latency = PageLatency()
        self.port = config.port
        self._viewers: set[_Viewer] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._backlog: dict | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "WebServer":
        for name, _ in PAGES.values():
            if not (ASSETS / name).is_file():
                raise WebServerError(f"page asset {ASSETS / name} is missing (broken install?)")
        self._thread = threading.Thread(target=self._thread_main, name="headcast-web", daemon=True)
        self._thread.start()
        self._ready.wait(15)
        if self._error is not None:
            raise WebServerError(f"cannot serve the page on {self.config.host}:{self.config.port}: "
                                 f"{self._error}") from self._error
        if not self._ready.is_set():
            raise WebServerError("the web server did not start")
        self.feed.on_frame = self._frame_from_encoder
        return self

    @property
    def url(self) -> str:
        host = self.config.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.config.token}" if self.config.token else "")

    def close(self) -> None:
        self.feed.on_frame = None
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # startup failures are reported by start(); later ones logged
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                log.warning("web server stopped: %s", exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        @web.middleware
        async def guard(request, handler):
            return await self._guard(request, handler)

        app = web.Application(middlewares=[guard], client_max_size=4096)
        app.router.add_get("/ws", self._websocket)
        app.router.add_get("/status.json", self._status_json)
        for route in PAGES:
            app.router.add_get(route, self._page)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port, reuse_address=True)
        await site.start()
        sockets = site._server.sockets if site._server else []
        if sockets:
            self.port = sockets[0].getsockname()[1]
        self._ready.set()
        status_task = asyncio.create_task(self._status_loop())
        try:
            await self._stop.wait()
        finally:
            status_task.cancel()
            for viewer in list(self._viewers):
                await viewer.ws.close()
            await runner.cleanup()

    # ------------------------------------------------------------------ guard
    def _allowed_hosts(self) -> set[str]:
        port = self.port
        hosts = {f"{self.config.host}:{port}", f"[{self.config.host}]:{port}"}
        if is_loopback(self.config.host):
            hosts |= {f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"}
        return hosts

    def _authorised(self, request) -> bool:
        token = self.config.token
        if token is None:
            return True
        given = request.query.get("token") or request.cookies.get("headcast_token") or ""
        return hmac.compare_digest(given.encode(), token.encode())

    async def _guard(self, request, handler):
        if not self.config.public and request.host not in self._allowed_hosts():
            self.counters.refused_host += 1
            return web.Response(status=421, text="wrong Host for this server\n")
        if not self._authorised(request):
            self.counters.refused_auth += 1
            return web.Response(status=403, text="token required\n")
        response = await handler(request)
        if not isinstance(response, web.WebSocketResponse):
            response.headers["Content-Security-Policy"] = (
                "default-src 'self'; img-src 'self' blob: data:; connect-src 'self'; frame-ancestors 'none'")
            response.headers["Referrer-Policy"] = "no-referrer"
            response.headers["Cache-Control"] = "no-store"
            response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    # ------------------------------------------------------------------ HTTP
    async def _page(self, request):
        name, content_type = PAGES[request.path]
        return web.Response(body=(ASSETS / name).read_bytes(), content_type=content_type)

    async def _status_json(self, request):
        return web.json_response({"viewers": len(self._viewers), "web": self.summary()})

    # ------------------------------------------------------------------ WebSocket
    async def _websocket(self, request):
        origin = request.headers.get("Origin")
        if origin is not None and origin.split("://", 1)[-1] != request.host:
            self.counters.refused_host += 1
            return web.Response(status=403, text="cross-origin socket refused\n")
        if len(self._viewers) >= self.config.max_viewers:
            self.counters.refused_busy += 1
            return web.Response(status=503, text=f"at most {self.config.max_viewers} viewers\n")
        ws = web.WebSocketResponse(max_msg_size=MAX_CLIENT_MESSAGE, heartbeat=15, compress=False)
        await ws.prepare(request)
        viewer = _Viewer(ws, request.remote or "?")
        self._viewers.add(viewer)
        self.feed.viewers = len(self._viewers)
        self.counters.connections += 1
        self.counters.viewers_max = max(self.counters.viewers_max, len(self._viewers))
        log.info("web viewer connected from %s (%d watching)", viewer.peer, len(self._viewers))
        pump = asyncio.create_task(self._pump(viewer))
        try:
            hello = {"type": "hello", "server_ns": time.monotonic_ns(), "max_viewers": self.config.max_viewers,
                     "in_flight": IN_FLIGHT, "backlog": self.dashboard.backlog(), "status": self._backlog}
            viewer.status = json.dumps(hello)
            viewer.wake.set()
            async for msg in ws:
                if msg.type != WSMsgType.TEXT or not self._client_message(viewer, msg.data):
                    self.counters.bad_messages += 1
                    await ws.close(code=1003, message=b"read-only page: only acknowledgements and pings")
                    break
        finally:
            pump.cancel()
            self._viewers.discard(viewer)
            self.feed.viewers = len(self._viewers)
            log.info("web viewer %s left (%d watching)", viewer.peer, len(self._viewers))
        return ws

    def _client_message(self, viewer: _Viewer, text: str) -> bool:
        """Acknowledgements and pings; False for anything else (the socket is then closed)."""
        try:
            msg = json.loads(text)
        except ValueError:
            return False
        if not isinstance(msg, dict):
            return False
        kind = msg.get("type")
        if kind == "ping":
            t = msg.get("t")
            if not isinstance(t, (int, float)):
                return False
            viewer.pongs.append({"type": "pong", "t": t, "server_ns": time.monotonic_ns()})
            viewer.wake.set()
            return True
        if kind == "shown":
            seq, shown_ns = msg.get("seq"), msg.get("shown_server_ns")
            if not isinstance(seq, int) or not isinstance(shown_ns, (int, float, type(None))):
                return False
            sent = viewer.in_flight.pop(seq, None)
            if sent is not None:
                frame, sent_ns = sent
                viewer.shown += 1
                self.counters.frames_shown += 1
                if shown_ns is not None and shown_ns >= sent_ns - 5_000_000:   # a clock estimate off by ms is kept
                    self.page_latency.add((frame.collected_ns - frame.grabbed_ns) / 1e6,
                                          (frame.encoded_ns - frame.collected_ns) / 1e6,
                                          (sent_ns - frame.encoded_ns) / 1e6, (shown_ns - sent_ns) / 1e6)
            viewer.wake.set()
            return True
        return False

    async def _pump(self, viewer: _Viewer) -> None:
        """Everything this viewer is sent, in order: status, pongs, the newest frame it lacks."""
        ws = viewer.ws
        try:
            while not ws.closed:
                await viewer.wake.wait()
                viewer.wake.clear()
                if viewer.status is not None:
                    status, viewer.status = viewer.status, None
                    await ws.send_str(status)
                while viewer.pongs:
                    await ws.send_str(json.dumps(viewer.pongs.pop(0)))
                frame = self.feed.latest
                if frame is not None and frame.seq > viewer.last_sent_seq and len(viewer.in_flight) < IN_FLIGHT:
                    if viewer.last_sent_seq and frame.seq > viewer.last_sent_seq + 1:
                        skipped = frame.seq - viewer.last_sent_seq - 1
                        viewer.skipped += skipped
                        self.counters.frames_skipped += skipped
                    sent_ns = time.monotonic_ns()
                    header = FRAME_HEADER.pack(FRAME_MAGIC, frame.seq, frame.width, frame.height, frame.index,
                                               frame.display_ns, frame.grabbed_ns, frame.encoded_ns, sent_ns, 0)
                    viewer.last_sent_seq = frame.seq
                    viewer.in_flight[frame.seq] = (frame, sent_ns)
                    await ws.send_bytes(header + frame.jpeg)
                    viewer.sent += 1
                    self.counters.frames_sent += 1
                # Acknowledgements that never come (a tab in the background) must not stall it forever.
                stale = [s for s, (_, t) in viewer.in_flight.items() if time.monotonic_ns() - t > 2_000_000_000]
                for s in stale:
                    del viewer.in_flight[s]
        except (ConnectionError, RuntimeError, asyncio.CancelledError):
            pass

    def _frame_from_encoder(self, frame) -> None:
        """Encoder thread → server loop: wake every viewer (they pick the newest frame)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake_all)

    def _wake_all(self) -> None:
        for viewer in self._viewers:
            viewer.wake.set()

    async def _status_loop(self) -> None:
        while True:
            try:
                status = self.dashboard.update()
                status["web"] = {"viewers": len(self._viewers), **self._viewer_summary()}
                self._backlog = status
                text = json.dumps(status)
                for viewer in self._viewers:
                    viewer.status = text     # an unsent older status is simply replaced
                    viewer.wake.set()
            except Exception as exc:  # a dashboard bug must not end the page
                log.warning("web status failed: %s", exc)
            await asyncio.sleep(self.config.status_period_s)

    def _viewer_summary(self) -> dict:
        pl = self.page_latency.summary()["eye_drawn_to_shown"]
        return {"frames_sent": self.counters.frames_sent, "frames_shown": self.counters.frames_shown,
                "frames_skipped": self.counters.frames_skipped,
                "page_latency_ms": {"p50": pl["p50"], "p99": pl["p99"], "n": pl["n"]}}

    # ------------------------------------------------------------------ reporting
    def summary(self) -> dict:
        c = self.counters
        return {"address": f"{self.config.host}:{self.port}", "public": self.config.public,
                "token": self.config.token is not None, "max_viewers": self.config.max_viewers,
                "viewers_max": c.viewers_max, "connections": c.connections, "refused_busy": c.refused_busy,
                "refused_auth": c.refused_auth, "refused_host": c.refused_host, "bad_messages": c.bad_messages,
                "frames_sent": c.frames_sent, "frames_shown": c.frames_shown, "frames_skipped": c.frames_skipped,
                "page_latency_ms": self.page_latency.summary(), "feed": self.feed.summary()}
