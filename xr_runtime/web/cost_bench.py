"""What the live page costs the frame loop, and what it adds to latency (`headcast bench web`).

One run on the same render node, alternating phases of equal length: nobody watching, a viewer
connected (Debian's headless Chromium showing the real page, or a socket client that
acknowledges frames like the page does), nobody watching, a viewer, ... ending with nobody. On a
shared machine the load of other jobs drifts during a run; alternating, and comparing each viewer
phase with the two phases around it, keeps that drift out of the ratio. The node is the real one: an
avatar package on the streaming engine, driven by a capture node replaying the sample clip in
real time, rendered headless at a paced rate; the page is served by `WebServer` exactly as
`render --web` serves it. Per phase: render rate and frame time (p50/p99 of the loop's own
records), end-to-end latency of the displayed capture frames. For the viewer phase: the page's
latency from the eye being drawn to the frame being shown in the browser, and its parts.

Also, on frames sampled from the same spectator view, the encoders the page could have used:
JPEG (what it uses) against H.264 in libx264's zero-latency mode (what a WebRTC or fragmented-MP4
page would need) — time per frame and bytes per frame.
"""
from __future__ import annotations

import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.percentiles import percentiles
from xr_runtime.render_node import RenderNode


@dataclass(frozen=True)
class PageCostConfig:
    avatar: Path
    driver: Path
    phase_s: float = 8.0
    cycles: int = 3                   # viewer phases (each between two phases with nobody watching)
    warmup_s: float = 4.0
    width: int = 640
    height: int = 480
    fps: float = 60.0
    web_fps: float = 30.0
    viewer: str = "browser"           # or "socket"


class _TimedNode(RenderNode):
    """The render node, keeping when each frame ended (to cut the run into phases)."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.frame_end_ns: list[int] = []

    def end_frame(self, frame, timing) -> None:
        super().end_frame(frame, timing)
        self.frame_end_ns.append(time.monotonic_ns())


class _FrameSample:
    """Keeps copies of the first frames the page's feed is given (for the encoder comparison),
    without asking the tap for any frame of its own."""

    def __init__(self, feed, count: int = 60) -> None:
        self.count = count
        self.frames: list[np.ndarray] = []
        self.active = False
        offer = feed.offer

        def keep_and_offer(frame) -> None:
            if self.active and len(self.frames) < self.count:
                self.frames.append(np.ascontiguousarray(frame.top_down()[:, :, :3]))
            offer(frame)

        feed.offer = keep_and_offer


def _phase_stats(node: _TimedNode, t0: int, t1: int) -> dict:
    ends = np.asarray(node.frame_end_ns, dtype=np.int64)
    records = list(node.stats.records)[-len(ends):]
    inside = [r for r, t in zip(records, ends) if t0 <= t < t1]
    frame_ms = [r.frame for r in inside]
    times = node.latency.times()
    mask = (times["display"] >= t0) & (times["display"] < t1)
    e2e = (times["display"][mask] - times["capture"][mask]) / 1e6
    return {"frames": len(inside), "fps": len(inside) / ((t1 - t0) / 1e9),
            "frame_ms": percentiles(frame_ms), "draw_ms": percentiles(r.draw for r in inside),
            "sample_ms": percentiles(r.sample for r in inside),
            "end_to_end_ms": percentiles(e2e.tolist())}


def _paired_ratios(phases: list[dict]) -> dict:
    """Each viewer phase against the mean of the two unwatched phases around it; median over pairs."""
    out = {}
    for key, pick in (("fps", lambda p: p["fps"]), ("frame_p50", lambda p: p["frame_ms"]["p50"]),
                      ("frame_p99", lambda p: p["frame_ms"]["p99"]),
                      ("end_to_end_p50", lambda p: p["end_to_end_ms"]["p50"])):
        pairs = []
        for i in range(1, len(phases) - 1, 2):
            before, during, after = (pick(phases[j]) for j in (i - 1, i, i + 1))
            if None not in (before, during, after) and before + after > 0:
                pairs.append(during / ((before + after) / 2))
        out[key] = {"pairs": [round(v, 4) for v in pairs], "median": float(np.median(pairs)) if pairs else None}
    return out


def compare_encoders(frames: list[np.ndarray], quality: int = 80) -> dict:
    """JPEG (cv2) against H.264 (libx264 ultrafast + zerolatency, one frame in, one packet out)."""
    import fractions

    import av
    import cv2

    if not frames:
        return {}
    out = {}
    ms, sizes = [], []
    for rgb in frames:
        t = time.perf_counter()
        ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        ms.append((time.perf_counter() - t) * 1e3)
        sizes.append(len(data))
    out["jpeg"] = {"quality": quality, "encode_ms": percentiles(ms), "kB_per_frame": percentiles(s / 1e3 for s in sizes),
                   "frames_until_first_output": 0}
    h, w = frames[0].shape[:2]
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = w - w % 2, h - h % 2, "yuv420p"
    codec.time_base = fractions.Fraction(1, 90_000)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": "23"}
    codec.open()
    ms, sizes, first = [], [], None
    for i, rgb in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: codec.height, : codec.width]), format="rgb24")
        frame.pts = i * 3000
        t = time.perf_counter()
        packets = codec.encode(frame)
        ms.append((time.perf_counter() - t) * 1e3)
        if packets and first is None:
            first = i
        sizes.append(sum(p.size for p in packets))
    out["h264_zerolatency"] = {"preset": "ultrafast", "encode_ms": percentiles(ms),
                               "kB_per_frame": percentiles(s / 1e3 for s in sizes[1:]),
                               "keyframe_kB": sizes[0] / 1e3, "frames_until_first_output": first}
    return out


class _SocketViewer:
    """A viewer that acknowledges every frame as soon as it arrives (no decoding, no drawing)."""

    def __init__(self, url: str) -> None:
        self.url = url.replace("http://", "ws://").split("?")[0].rstrip("/") + "/ws"
        self._stop = threading.Event()
        self.frames = 0
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        import asyncio

        asyncio.run(self._run())

    async def _run(self) -> None:
        import asyncio
        import json

        import aiohttp

        from xr_runtime.web.server import FRAME_HEADER

        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(self.url) as ws:
                while not self._stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.2)
                    except asyncio.TimeoutError:
                        continue
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        seq = FRAME_HEADER.unpack(msg.data[:FRAME_HEADER.size])[1]
                        self.frames += 1
                        await ws.send_str(json.dumps({"type": "shown", "seq": seq,
                                                      "shown_server_ns": time.monotonic_ns()}))
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class _BrowserViewer:
    """One Chromium for the whole run (its start-up stays out of the phases): the page is opened
    for a viewer phase and left for about:blank (socket closed) after it."""

    def __init__(self, url: str) -> None:
        from xr_runtime.web.chromium import start_chromium

        self.url = url
        self.driver = start_chromium()
        self.frames = 0

    def connect(self) -> None:
        self.driver.get(self.url)

    def disconnect(self) -> None:
        self.frames += int(self.driver.execute_script("return window.headcast.framesShown;") or 0)
        self.driver.get("about:blank")

    def close(self) -> None:
        from xr_runtime.web.chromium import stop_chromium

        stop_chromium(self.driver)


class _SocketViewers:
    def __init__(self, url: str) -> None:
        self.url = url
        self.frames = 0
        self._viewer = None

    def connect(self) -> None:
        self._viewer = _SocketViewer(self.url)

    def disconnect(self) -> None:
        self._viewer.close()
        self.frames += self._viewer.frames
        self._viewer = None

    def close(self) -> None:
        if self._viewer is not None:
            self.disconnect()


def measure_page_cost(cfg: PageCostConfig, log=print) -> dict:
    from streaming.receiver import Receiver, ReceiverConfig
    from xr_runtime.avatars.sampler import SamplerConfig
    from xr_runtime.avatars.sources import StateSourceConfig, make_state_source
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.render_node import RenderNodeConfig
    from xr_runtime.scene.scene_file import single_avatar_scene
    from xr_runtime.spectator.outputs import SpectatorConfig, SpectatorOutputs
    from xr_runtime.web.server import WebConfig

    scene = single_avatar_scene(cfg.avatar, "bench")
    receiver = Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", bind=True)).start()
    setup = capture = outputs = viewer = None
    try:
        setup = make_state_source(scene, receiver, StateSourceConfig(engine="package"))
        outputs = SpectatorOutputs(SpectatorConfig(web=WebConfig(port=0), web_fps=cfg.web_fps))
        sample = _FrameSample(outputs.feed)
        node = _TimedNode(scene, setup.assets, setup.source, RenderNodeConfig(sampler=SamplerConfig(fade_s=0.1)),
                          spectator=outputs.tap)
        outputs.start(node, receiver)
        capture = subprocess.Popen([sys.executable, "-m", "tools.cli", "capture", "--source", str(cfg.driver),
                                    "--connect", receiver.bound_endpoint, "--stream", "bench", "--realtime", "--loop",
                                    "--clock", "off"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True)
        backend = HeadlessBackend(HeadlessConfig(width=cfg.width, height=cfg.height, fps=cfg.fps, paced=True,
                                                 head_position=tuple(scene.viewer.position),
                                                 head_rotation=tuple(scene.viewer.rotation)))
        stop = threading.Event()
        result: dict = {}
        loop = threading.Thread(target=lambda: result.update(node.run(backend, stop=stop)), name="render-loop")
        loop.start()
        viewer = _BrowserViewer(outputs.url) if cfg.viewer == "browser" else _SocketViewers(outputs.url)
        time.sleep(cfg.warmup_s)
        spans: list[tuple[str, int, int]] = []
        total = 2 * cfg.cycles + 1
        for i in range(total):
            watching = i % 2 == 1
            log(f"phase {i + 1}/{total}: {cfg.viewer + ' viewer connected' if watching else 'nobody watching'} "
                f"({cfg.phase_s:.0f} s)")
            if watching:
                viewer.connect()
                sample.active = True
            t0 = time.monotonic_ns()
            time.sleep(cfg.phase_s)
            t1 = time.monotonic_ns()
            if watching:
                viewer.disconnect()
                sample.active = False
            spans.append(("viewer" if watching else "none", t0, t1))
            time.sleep(0.5)            # let a closing socket settle outside the phases
        viewer_frames = viewer.frames
        viewer.close()
        viewer = None
        stop.set()
        loop.join(timeout=30)
        web = outputs.server.summary()
        phases = [{"watching": kind == "viewer", **_phase_stats(node, t0, t1)} for kind, t0, t1 in spans]
        ratios = _paired_ratios(phases)
        return {"config": {k: str(v) if isinstance(v, Path) else v for k, v in cfg.__dict__.items()},
                "phases": phases, "ratios_viewer_vs_neighbours": ratios, "viewer_frames_shown": viewer_frames,
                "page": web, "spectator": result.get("spectator"), "render_backend": result.get("backend_info"),
                "encoders": compare_encoders(sample.frames)}
    finally:
        if viewer is not None:
            viewer.close()
        if capture is not None:
            capture.terminate()
            try:
                capture.wait(10)
            except subprocess.TimeoutExpired:
                capture.kill()
        if outputs is not None:
            outputs.close()
        if setup is not None and setup.close is not None:
            setup.close()
        receiver.stop()
