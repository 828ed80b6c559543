"""Everything that shows the spectator view outside the headset, set up in one place for
`headcast render`: the web page (`--web`) and the virtual camera (`--virtual-camera`), fed by
one `SpectatorTap` on the chosen eye.

    outputs = SpectatorOutputs(SpectatorConfig(web=WebConfig.parse("8080")))
    node = RenderNode(scene, assets, source, spectator=outputs.tap)
    outputs.start(node, receiver, clock)      # the page and camera threads
    ...
    outputs.close(); stats.update(outputs.summary())
"""
from __future__ import annotations

from dataclasses import dataclass

from xr_runtime.spectator.tap import SpectatorTap


@dataclass(frozen=True)
class SpectatorConfig:
    eye: int = 0                        # 0 left (or the only eye), 1 right
    free_camera: object | None = None   # spectator.tap.FreeCamera: a view of its own instead of an eye
    web: object | None = None           # web.server.WebConfig
    web_fps: float = 30.0
    web_max_width: int = 960
    camera: object | None = None        # spectator.virtual_camera.VirtualCameraConfig


class SpectatorOutputs:
    def __init__(self, config: SpectatorConfig) -> None:
        self.config = config
        self.feed = None
        self.server = None
        self.camera = None
        consumers = []
        if config.camera is not None:
            from xr_runtime.spectator.virtual_camera import VirtualCameraFeed

            self.camera = VirtualCameraFeed(config.camera)      # opens the device now: fails early
            consumers.append(self.camera)
        if config.web is not None:
            from xr_runtime.web.feed import FeedConfig, JpegFeed

            self.feed = JpegFeed(FeedConfig(max_fps=config.web_fps, max_width=config.web_max_width))
            consumers.append(self.feed)
        self.tap = SpectatorTap(consumers, eye=config.eye, free_camera=config.free_camera) if consumers else None

    def start(self, node, receiver=None, clock=None) -> None:
        if self.feed is not None:
            from xr_runtime.web.dashboard import Dashboard
            from xr_runtime.web.server import WebServer

            self.server = WebServer(self.config.web, self.feed, Dashboard(node, receiver, clock)).start()

    @property
    def url(self) -> str | None:
        return self.server.url if self.server is not None else None

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
        if self.feed is not None:
            self.feed.close()
        if self.camera is not None:
            self.camera.close()

    def summary(self) -> dict:
        out = {}
        if self.server is not None:
            out["web"] = self.server.summary()
        if self.camera is not None:
            out["virtual_camera"] = self.camera.summary()
        return out
