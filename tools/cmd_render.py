"""`headcast render`: the render node — scene + avatars driven over ZeroMQ, on OpenXR, a desktop
window or headless (PNG frames / MP4).

    headcast render --scene room.json --bind tcp://0.0.0.0:5555 --server-key K --allow DIR
    headcast render --avatar pkgs/alice --stream cam1 --backend headless --frames 120 --out out.mp4

Avatars come from packages (`inference/avatar_package.py`): mesh, blendshapes, and the decoder's
neutral face (z = 0) as the idle texture. `--dev-avatars` replaces every slot's package with a
procedural test head (development, CI). The receiver binds `--bind`. With `--engine auto`
(default) packages that carry an animation network are driven by the streaming engine
(`xr_runtime/avatars/engine_source.py`: receiver → LSTM → decoder on a worker thread); otherwise each avatar
shows its neutral face and fades with its stream's presence (live, face lost, lost).
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from tools.errors import CliError
from tools.net_args import add_server_args, curve_server_from_args, start_clock_server

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser("render", help="render avatars driven by capture streams (OpenXR, desktop or headless)")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--scene", type=Path, metavar="FILE", help="scene file (JSON): environment and avatar slots")
    what.add_argument("--avatar", type=Path, metavar="DIR", help="one avatar package, placed 1 m in front")
    p.add_argument("--stream", default="default", metavar="ID", help="stream id driving --avatar (default: default)")
    add_server_args(p)
    p.add_argument("--backend", default="auto", choices=["auto", "openxr", "desktop", "headless"])
    p.add_argument("--frames", type=int, metavar="N", help="stop after N rendered frames")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--out", type=Path, metavar="PATH", help="headless output: *.mp4, or a directory for PNG frames")
    p.add_argument("--json", type=Path, metavar="STATS", help="write render statistics as JSON")
    p.add_argument("--stereo", action="store_true", help="desktop/headless: two eyes side by side")
    p.add_argument("--size", default="640x480", metavar="WxH", help="desktop/headless eye size (default 640x480)")
    p.add_argument("--fps", type=float, default=60.0, help="headless pacing / video rate (default 60)")
    p.add_argument("--unpaced", action="store_true", help="headless: render as fast as possible")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="openxr: mirror the left eye in a desktop window (default: when a display exists)")
    p.add_argument("--graphics", default="auto", choices=["auto", "egl", "glx", "win32"],
                   help="openxr: GL binding (auto: GLX with an X display, EGL without, WGL on Windows)")
    p.add_argument("--samples", type=int, metavar="N",
                   help="openxr: MSAA samples per eye (default: 4 on a GPU, 0 on a software rasteriser)")
    p.add_argument("--refresh-rate", type=float, metavar="HZ",
                   help="openxr: display refresh rate to ask for (XR_FB_display_refresh_rate; default: the highest)")
    p.add_argument("--reconnects", type=int, default=5, metavar="N",
                   help="reopen a lost OpenXR session up to N times (runtime restarted); default 5")
    p.add_argument("--save-placements", action="store_true",
                   help="write moved avatar placements back into --scene on exit (atomic)")
    p.add_argument("--dev-avatars", action="store_true",
                   help="development: a procedural test head for every slot instead of its package")
    p.add_argument("--engine", default="auto", choices=["auto", "package", "reference", "none"],
                   help="what animates the avatars: 'package' = each package's animation network on the streaming "
                        "engine; 'auto' (default) = that when every package carries one, else 'none' (neutral faces "
                        "that fade with their stream); 'reference' (development) = untrained reference avatars "
                        "through the real engine")
    p.add_argument("--device", default="cpu", help="streaming engine device with --engine (cpu, cuda)")
    p.add_argument("--head-motion", action=argparse.BooleanOptionalAction, default=True,
                   help="turn the avatar's head as the driver turns theirs, relative to how they held it when "
                        "the stream started (default on; --no-head-motion keeps it still on its slot)")
    p.add_argument("--latency-trace", type=Path, metavar="FILE",
                   help="write every displayed frame's stage timestamps (JSON columns, ns) for headcast bench latency")
    p.add_argument("--latency-bind", metavar="ENDPOINT",
                   help="publish latency records live here for `headcast bench latency --attach` (loopback unless --insecure)")
    p.add_argument("--clock-bind", default="auto", metavar="ENDPOINT|auto|off",
                   help="clock service for capture nodes' clock calibration (auto: the --bind port + 1)")
    p.add_argument("--video-codec", default="h264", choices=["h264", "mp4v"],
                   help="codec of an --out *.mp4 (default h264: plays in browsers; mp4v: the old MPEG-4 Part 2)")
    web = p.add_argument_group("live page and virtual camera (the spectator view: one eye)")
    web.add_argument("--web", metavar="[HOST:]PORT",
                     help="serve a live page: the spectator view, the stream table and the latency plot "
                          "(loopback unless HOST is given with --web-public)")
    web.add_argument("--web-public", action="store_true",
                     help="allow --web on a non-loopback address; every viewer then needs the printed token")
    web.add_argument("--web-token-file", type=Path, metavar="FILE",
                     help="token viewers must present (default with --web-public: a new random one, printed)")
    web.add_argument("--web-max-viewers", type=int, default=4, metavar="N", help="viewers at once (default 4)")
    web.add_argument("--web-fps", type=float, default=30.0, help="spectator frames a second at most (default 30)")
    web.add_argument("--spectator-eye", default="left", choices=["left", "right"],
                     help="which eye the page and the virtual camera show (default left; mono backends: the only one)")
    web.add_argument("--virtual-camera", nargs="?", const="auto", metavar="DEVICE",
                     help="publish the spectator view as a system camera (v4l2loopback on Linux, OBS elsewhere; "
                          "pyvirtualcam); DEVICE e.g. /dev/video10, default: the first loopback device")
    web.add_argument("--virtual-camera-size", default="1280x720", metavar="WxH",
                     help="virtual camera frame size (default 1280x720; the view is letterboxed into it)")
    web.add_argument("--virtual-camera-fps", type=float, default=30.0, help="virtual camera rate (default 30)")
    p.set_defaults(func=run)


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise CliError(f"--size must look like 640x480, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise CliError(f"--size {text} out of range")
    return w, h


def load_assets(scene, dev: bool) -> list:
    """AvatarAssets per slot: from its package, or the procedural dev head."""
    from xr_runtime.avatars.dev_source import dev_head_mesh, dev_texture
    from xr_runtime.render_node import AvatarAssets

    if dev:
        return [AvatarAssets(dev_head_mesh(), dev_texture(128)) for _ in scene.avatars]
    from inference.avatar_package import AvatarPackage, AvatarPackageError
    from xr_runtime.avatars.mesh import AvatarMeshData

    out, cache = [], {}
    for slot in scene.avatars:
        key = Path(slot.package).resolve()
        if key not in cache:
            try:
                package = AvatarPackage.load(slot.package)
            except AvatarPackageError as exc:
                raise CliError(str(exc)) from exc
            import torch

            with torch.inference_mode():
                texture, weights = package.decoder(torch.zeros(package.manifest.z_dim))
            mesh = package.mesh
            cache[key] = AvatarAssets(AvatarMeshData(mesh.positions, mesh.uvs, mesh.indices, mesh.blendshapes),
                                      texture.cpu().numpy(), weights.cpu().numpy().astype(np.float32))
        out.append(cache[key])
    return out


def build_source(scene, assets, receiver):
    """Without an animation network: neutral faces whose presence follows the live streams."""
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream

    log.warning("no animation engine for these avatars: they show their neutral face, fading with their "
                "stream's presence")
    streams = {slot.stream: StaticStream(a.neutral_texture, a.weights0()) for slot, a in zip(scene.avatars, assets)}
    return StaticAvatarStateSource(streams, receiver=receiver), None


def _head_motion(args):
    from calibration.head_pose import HeadMotionConfig

    return HeadMotionConfig() if getattr(args, "head_motion", True) else None


def _make_source(engine: str, scene, receiver, args, clock=None):
    """(source, assets, closer) for the chosen engine; 'auto' falls back to neutral faces."""
    if engine == "reference":
        from xr_runtime.avatars.engine_source import reference_engine_source

        source, assets = reference_engine_source(scene, receiver, device=args.device, clock=clock,
                                                 head_motion=_head_motion(args))
        return source, assets, source.stop
    if engine in ("package", "auto"):
        from inference.avatar_package import AvatarPackageError
        from xr_runtime.avatars.engine_source import package_engine_source

        try:
            source, assets = package_engine_source(scene, receiver, device=args.device, clock=clock,
                                                   head_motion=_head_motion(args))
            print(f"engine: streaming engine on {args.device} with the packages' animation networks", flush=True)
            return source, assets, source.stop
        except AvatarPackageError as exc:
            raise CliError(str(exc)) from exc
        except ValueError as exc:
            if engine == "package":
                raise CliError(str(exc)) from exc
            log.warning("%s: showing neutral faces", exc)
    assets = load_assets(scene, args.dev_avatars)
    source, closer = build_source(scene, assets, receiver)
    return source, assets, closer


def make_backend(name: str, args, scene):
    size = _parse_size(args.size)
    if name == "headless":
        from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig

        from media.video_writer import VideoConfig

        return HeadlessBackend(HeadlessConfig(width=size[0], height=size[1], stereo=args.stereo, fps=args.fps,
                                              paced=not args.unpaced, out=args.out,
                                              video=VideoConfig(codec=getattr(args, "video_codec", "h264")),
                                              head_position=tuple(scene.viewer.position),
                                              head_rotation=tuple(scene.viewer.rotation)))
    if args.out is not None:
        raise CliError("--out is for the headless backend")
    if name == "desktop":
        from xr_runtime.backends.desktop import DesktopBackend, DesktopConfig

        return DesktopBackend(DesktopConfig(width=size[0] * (2 if args.stereo else 1), height=size[1], stereo=args.stereo,
                                            head_position=tuple(scene.viewer.position),
                                            head_rotation=tuple(scene.viewer.rotation)))
    from xr_runtime.backends.openxr import OpenXRBackend
    from xr_runtime.openxr.session import XrSessionConfig

    if args.samples is not None and args.samples < 0:
        raise CliError("--samples must be 0 or more")
    if args.refresh_rate is not None and args.refresh_rate <= 0:
        raise CliError("--refresh-rate must be positive")
    return OpenXRBackend(XrSessionConfig(graphics=args.graphics, samples=args.samples, refresh_rate=args.refresh_rate),
                         mirror=args.mirror)


def spectator_config(args):
    """The --web / --virtual-camera flags as a SpectatorConfig, or None when neither is given."""
    from xr_runtime.spectator.outputs import SpectatorConfig

    if not args.web and not args.virtual_camera:
        if args.web_public or args.web_token_file:
            raise CliError("--web-public and --web-token-file need --web")
        return None
    web = camera = None
    if args.web:
        from xr_runtime.web.server import WebConfig

        token = None
        if args.web_token_file is not None:
            try:
                token = args.web_token_file.read_text().strip()
            except OSError as exc:
                raise CliError(f"--web-token-file: {exc}") from exc
            if len(token) < 16:
                raise CliError("--web-token-file: a token needs at least 16 characters")
        web = WebConfig.parse(args.web, public=args.web_public, token=token, max_viewers=args.web_max_viewers)
    if args.virtual_camera:
        from xr_runtime.spectator.virtual_camera import VirtualCameraConfig

        w, h = _parse_size(args.virtual_camera_size)
        camera = VirtualCameraConfig(width=w, height=h, fps=args.virtual_camera_fps,
                                     device=None if args.virtual_camera == "auto" else args.virtual_camera)
    if args.web_fps <= 0:
        raise CliError("--web-fps must be positive")
    return SpectatorConfig(eye=1 if args.spectator_eye == "right" else 0, web=web, web_fps=args.web_fps,
                           camera=camera)


def run(args) -> int:
    from xr_runtime.backends.select import choose_backend
    from xr_runtime.interrupts import stop_event_on_signals
    from streaming.receiver import Receiver, ReceiverConfig
    from xr_runtime.render_node import RenderNode, RenderNodeConfig
    from xr_runtime.scene.scene_file import Scene, SceneError, single_avatar_scene
    from xr_runtime.avatars.worker_source import WorkerStateSource

    if args.frames is not None and args.frames < 1:
        raise CliError("--frames must be at least 1")
    try:
        scene = Scene.load(args.scene) if args.scene else single_avatar_scene(args.avatar, args.stream)
    except SceneError as exc:
        raise CliError(str(exc)) from exc
    if args.save_placements and not args.scene:
        raise CliError("--save-placements needs --scene")
    spectator = spectator_config(args)
    try:
        choice = choose_backend(args.backend)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    print(f"backend: {choice.name} ({choice.reason})", flush=True)
    engine = args.engine
    if args.dev_avatars:
        if engine in ("package", "reference"):
            raise CliError(f"--engine {engine} brings its own avatars; drop --dev-avatars")
        engine = "none"
    curve = curve_server_from_args(args)
    try:
        receiver = Receiver(ReceiverConfig(endpoint=args.bind, bind=True, curve_server=curve,
                                           insecure=args.insecure)).start()
    except Exception as exc:  # zmq.ZMQError: port in use, bad endpoint
        raise CliError(f"cannot listen on {args.bind}: {exc}") from exc
    endpoint = receiver.bound_endpoint
    clock = start_clock_server(args.clock_bind, endpoint, curve, args.insecure)
    try:
        source, assets, closer = _make_source(engine, scene, receiver, args, clock)
    except BaseException:
        receiver.stop()
        if clock:
            clock.close()
        raise
    # Printed once the source is ready (building an engine takes seconds): from here on, streams count.
    print(f"listening on {endpoint}{' (CURVE)' if curve else ''}", flush=True)
    # The streaming engine already relaxes its latent to the neutral face when presence drops, so the
    # node's own fade only needs to smooth that (short); neutral-face sources rely on the node's fade.
    from xr_runtime.avatars.sampler import SamplerConfig

    fade_s = 0.1 if isinstance(source, WorkerStateSource) else SamplerConfig().fade_s
    outputs = None
    publisher = None
    try:
        if spectator is not None:
            from xr_runtime.spectator.outputs import SpectatorOutputs

            outputs = SpectatorOutputs(spectator)   # a HeadcastError (no camera device) ends the command
        node = RenderNode(scene, assets, source,
                          RenderNodeConfig(sampler=SamplerConfig(fade_s=fade_s),
                                           scene_save_path=args.scene if args.save_placements else None),
                          spectator=outputs.tap if outputs else None)
        backend = make_backend(choice.name, args, scene)
        if outputs is not None:
            outputs.start(node, receiver, clock)
            if outputs.url:
                print(f"web page on {outputs.url}", flush=True)
            if outputs.camera is not None:
                print(f"virtual camera {outputs.camera.device_name}", flush=True)
        if args.latency_bind:
            from xr_runtime.latency.publisher import LatencyPublisher

            publisher = LatencyPublisher(node.latency, args.latency_bind, insecure=args.insecure)
            print(f"latency records on {publisher.endpoint}", flush=True)
        with stop_event_on_signals() as stop:
            try:
                stats = node.run(backend, max_frames=args.frames, seconds=args.seconds, stop=stop,
                                 reconnects=args.reconnects if choice.name == "openxr" else 0,
                                 reconnect_wait_s=2.0)
            except Exception as exc:
                if type(exc).__name__ in ("XrUnavailableError", "GLContextError", "DesktopUnavailable"):
                    raise CliError(f"{choice.name} backend unavailable: {exc}") from exc
                raise
    finally:
        if outputs is not None:
            outputs.close()
        if publisher is not None:
            publisher.publish_new()
            publisher.close()
        if closer is not None:
            closer()
        counters = receiver.counters
        receiver.stop()
        if clock:
            clock.close()
    if args.save_placements and node.counters.placement_changes:
        node.save_scene(args.scene)
    stats["receiver"] = {"endpoint": endpoint, "messages": counters.messages, "malformed": counters.malformed}
    stats["backend_choice"] = {"name": choice.name, "reason": choice.reason}
    if outputs is not None:
        stats.update(outputs.summary())
    s = stats["stages_ms"]
    print(f"{stats['frames']} frames in {stats['seconds']:.2f} s ({stats['fps']:.1f} fps); frame "
          f"p50 {s['frame'].get('p50', float('nan')):.2f} ms, draw p50 {s['draw'].get('p50', float('nan')):.2f} ms",
          flush=True)
    if args.out is not None:
        print(f"wrote {args.out}", flush=True)
    if args.latency_trace:
        from tools.bench_common import write_json

        write_json(args.latency_trace, {k: v.tolist() for k, v in node.latency.times().items()})
    if args.json:
        from core.atomic_files import atomic_write_json

        atomic_write_json(args.json, stats, default=str)
    return 0
