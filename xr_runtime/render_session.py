"""One render node process from start to statistics: receiver, clock service, state source, the
render loop on a backend, latency publishing, and an orderly shutdown whatever happens.

    stats = run_render_session(RenderSessionConfig(scene=scene, bind="tcp://127.0.0.1:5555"), say=print)

`say` receives the lines a user (or `local_session`, which waits for "listening on") should see:
the backend chosen and why, what animates the avatars, the endpoint once streams count. Errors the
user can act on are `HeadcastError`s: a port in use, a package that is wrong, a backend that
cannot run here (`BackendUnavailable`, named with the backend).
"""
from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from core.errors import BackendUnavailable, HeadcastError
from streaming.sockets import CurveClient, CurveServer
from xr_runtime.avatars.sources import StateSourceConfig, make_state_source
from xr_runtime.avatars.worker_source import WorkerStateSource
from xr_runtime.backends.factory import BackendOptions, make_backend

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderSessionConfig:
    scene: object                                  # xr_runtime.scene.scene_file.Scene
    bind: str                                      # the feature endpoint (the receiver binds it)
    curve: CurveServer | None = None
    insecure: bool = False                         # allow a non-loopback bind without CURVE
    backend: str = "auto"                          # auto, openxr, desktop, headless
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    source: StateSourceConfig = field(default_factory=StateSourceConfig)
    frames: int | None = None                      # stop after this many frames
    seconds: float | None = None                   # ... or after this long
    reconnects: int = 5                            # reopen a lost OpenXR session this many times
    clock_bind: str = "auto"                       # clock service endpoint (auto: bind port + 1; off)
    latency_bind: str | None = None                # publish latency records here (bench latency --attach)
    save_scene_to: Path | None = None              # write moved placements back here on exit
    optical_marker: bool = False                   # draw the optical frame counter (bench glass)
    refinement: str = "auto"                       # the packages' screen-space refinement: auto, on, off
    spectator: object | None = None                # spectator.outputs.SpectatorConfig: --web, --virtual-camera
    # In a room: the receiver connects to the room's relay (XPUB) instead of binding, subscribed to
    # the scene's streams only; `scene_link` (xr_runtime/room_link.RoomSceneLink) keeps placements in
    # step with the room's scene; `stop` ends the session from outside (the scene's slots changed).
    connect: str | None = None
    curve_client: CurveClient | None = None
    scene_link: object | None = None
    stop: object | None = None                     # threading.Event
    clock: object | None = None                    # with connect: room.room_clock.RoomClock (owned by the caller)


def run_render_session(cfg: RenderSessionConfig, say: Callable[[str], None] = log.info) -> tuple[dict, object]:
    """Runs the render node until its frame/time limit, SIGINT/SIGTERM, or the backend ends.
    Returns (statistics, the RenderNode) — the node for callers that want its latency records."""
    from calibration.clock_service import start_clock_service
    from streaming.receiver import Receiver, ReceiverConfig, status_as_dict
    from xr_runtime.avatars.sampler import SamplerConfig
    from xr_runtime.backends.select import choose_backend
    from xr_runtime.interrupts import stop_event_on_signals
    from xr_runtime.render_node import RenderNode, RenderNodeConfig

    try:
        choice = choose_backend(cfg.backend)
    except ValueError as exc:
        raise HeadcastError(str(exc)) from exc
    say(f"backend: {choice.name} ({choice.reason})")
    if cfg.scene.environment.kind == "gltf":
        # A hostile or broken environment is refused here, before any socket or engine exists
        # (the full read happens later, inside the backend's GL context).
        from xr_runtime.gl.gltf_environment import check_environment

        check_environment(cfg.scene.environment.path)
    # The scene's own streams have reserved slots: a flood of made-up ids cannot lock them out.
    scene_streams = frozenset(slot.stream for slot in cfg.scene.avatars)
    if cfg.connect is not None:
        receiver = Receiver(ReceiverConfig(endpoint=cfg.connect, bind=False, curve_client=cfg.curve_client,
                                           reserved_streams=scene_streams, allowed_streams=scene_streams,
                                           subscribe=tuple(sorted(scene_streams)))).start()
    else:
        receiver = Receiver(ReceiverConfig(endpoint=cfg.bind, bind=True, curve_server=cfg.curve,
                                           insecure=cfg.insecure, reserved_streams=scene_streams)).start()
    endpoint = receiver.bound_endpoint
    try:
        clock = cfg.clock if cfg.connect is not None else \
            start_clock_service(cfg.clock_bind, endpoint, cfg.curve, cfg.insecure, reserved=scene_streams)
    except BaseException:
        receiver.stop()
        raise
    setup = publisher = outputs = None
    try:
        if cfg.spectator is not None:
            from xr_runtime.spectator.outputs import SpectatorOutputs

            outputs = SpectatorOutputs(cfg.spectator)   # opens a virtual camera now: no device fails early
        setup = make_state_source(cfg.scene, receiver, cfg.source, clock)
        # Said once the source is ready (building an engine takes seconds): from here on, streams count.
        say(f"listening on {endpoint}{' (CURVE)' if cfg.curve else ''}")
        say(f"engine: {setup.description}")
        # The streaming engine already relaxes its latent to the idle face when presence drops, so the
        # node's own fade only needs to smooth that (short); idle-face sources rely on the node's fade.
        fade_s = 0.1 if setup.engine_driven else SamplerConfig().fade_s
        node = RenderNode(cfg.scene, setup.assets, setup.source,
                          RenderNodeConfig(sampler=SamplerConfig(fade_s=fade_s), scene_save_path=cfg.save_scene_to,
                                           optical_marker=cfg.optical_marker, refinement=cfg.refinement),
                          spectator=outputs.tap if outputs is not None else None, scene_link=cfg.scene_link)
        backend = make_backend(choice.name, cfg.backend_options, cfg.scene.viewer)
        if outputs is not None:
            outputs.start(node, receiver, clock)
            if outputs.url:
                say(f"web page on {outputs.url}")
            if outputs.camera is not None:
                say(f"virtual camera {outputs.camera.device_name}")
        if cfg.latency_bind:
            from xr_runtime.latency.publisher import LatencyPublisher

            publisher = LatencyPublisher(node.latency, cfg.latency_bind, insecure=cfg.insecure)
            say(f"latency records on {publisher.endpoint}")
        with stop_event_on_signals() as stop_event, _forwarded(cfg.stop, stop_event):
            try:
                stats = node.run(backend, max_frames=cfg.frames, seconds=cfg.seconds, stop=stop_event,
                                 reconnects=cfg.reconnects if choice.name == "openxr" else 0, reconnect_wait_s=2.0)
            except BackendUnavailable as exc:
                raise BackendUnavailable(f"{choice.name} backend unavailable: {exc}") from exc
    finally:
        if outputs is not None:
            outputs.close()
        if publisher is not None:
            publisher.publish_new()
            publisher.close()
        if setup is not None and setup.close is not None:
            setup.close()
        counters = receiver.counters
        receiver_streams = {sid: status_as_dict(st) for sid, st in receiver.snapshot().items()}
        receiver.stop()
        clock_stats = clock.stats() if clock else None
        if clock and cfg.connect is None:
            clock.close()
    if cfg.save_scene_to is not None and node.counters.placement_changes:
        node.save_scene(cfg.save_scene_to)
    stats["receiver"] = {"endpoint": endpoint, **counters.as_dict(), "streams": receiver_streams}
    stats["clock_service"] = clock_stats
    stats["backend_choice"] = {"name": choice.name, "reason": choice.reason}
    if isinstance(setup.source, WorkerStateSource):
        stats["engine"] = {"pacing": setup.source.pacing.mode, "steps": setup.source.steps,
                           "errors": setup.source.errors}
        engine = getattr(setup.source, "engine", None)
        if engine is not None and hasattr(engine, "feature_counters"):
            stats["engine"]["features"] = engine.feature_counters()
    if outputs is not None:
        stats.update(outputs.summary())
    return stats, node


@contextmanager
def _forwarded(outer, inner):
    """While the block runs, `outer` being set sets `inner` (the loop's own stop event)."""
    if outer is None:
        yield
        return
    done = threading.Event()

    def forward():
        while not done.is_set():
            if outer.wait(0.05):
                inner.set()
                return

    thread = threading.Thread(target=forward, name="headcast-stop-forward", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join(1.0)


__all__ = ["RenderSessionConfig", "run_render_session"]
