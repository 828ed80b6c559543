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
from pathlib import Path

from core.atomic_files import atomic_write_json
from core.errors import HeadcastError
from tools.bench_common import write_json
from tools.net_args import add_client_args, add_server_args, curve_client_from_args, curve_server_from_args
from xr_runtime.avatars.sources import ENGINES
from xr_runtime.avatars.worker_source import PACINGS
from xr_runtime.backends.frame_pacer import WAKES


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
    p.add_argument("--wake", default="late", choices=list(WAKES),
                   help="headless: start each frame just in time for its display instant (late, default) or at "
                        "the start of its period (period_start, the pre-issue-14 behaviour)")
    p.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                   help="openxr: mirror the left eye in a desktop window (default: when a display exists)")
    p.add_argument("--graphics", default="auto", choices=["auto", "egl", "glx", "win32"],
                   help="openxr: GL binding (auto: GLX with an X display, EGL without, WGL on Windows)")
    p.add_argument("--samples", type=int, metavar="N",
                   help="openxr: MSAA samples per eye (default: 4 on a GPU, 0 on a software rasteriser)")
    p.add_argument("--refresh-rate", type=float, metavar="HZ",
                   help="openxr: display refresh rate to ask for (XR_FB_display_refresh_rate; default: the highest)")
    p.add_argument("--face-stream", metavar="ID",
                   help="openxr: publish the wearer's face (XR_FB_face_tracking2 / XR_HTC_facial_tracking / "
                        "XR_ANDROID_face_tracking, when offered) as this expr52 stream")
    p.add_argument("--face-connect", metavar="ENDPOINT",
                   help="where --face-stream goes (a peer's render node or a room; default: this node's --bind)")
    add_client_args(p, prefix="face-", server="--face-connect")  # when it requires CURVE
    p.add_argument("--face-clock", metavar="ENDPOINT",
                   help="the receiving side's clock service, pinged as --face-stream (as a capture node's --clock)")
    p.add_argument("--reconnects", type=int, default=5, metavar="N",
                   help="reopen a lost OpenXR session up to N times (runtime restarted); default 5")
    p.add_argument("--save-placements", action="store_true",
                   help="write moved avatar placements back into --scene on exit (atomic)")
    p.add_argument("--dev-avatars", action="store_true",
                   help="development: a procedural test head for every slot instead of its package")
    p.add_argument("--engine", default="auto", choices=list(ENGINES),
                   help="what animates the avatars: 'package' = each package's animation network on the streaming "
                        "engine; 'auto' (default) = that when every package carries one, else 'none' (neutral faces "
                        "that fade with their stream); 'reference' (development) = untrained reference avatars "
                        "through the real engine")
    p.add_argument("--device", default="cpu", help="streaming engine device with --engine (cpu, cuda)")
    p.add_argument("--engine-pacing", default="frames", choices=list(PACINGS),
                   help="step the engine when a frame arrives (frames, default) or on a fixed 60 Hz timer (timer)")
    p.add_argument("--head-motion", action=argparse.BooleanOptionalAction, default=True,
                   help="turn the avatar's head as the driver turns theirs, relative to how they held it when "
                        "the stream started (default on; --no-head-motion keeps it still on its slot)")
    p.add_argument("--latency-trace", type=Path, metavar="FILE",
                   help="write every displayed frame's stage timestamps (JSON columns, ns) for headcast bench latency")
    p.add_argument("--latency-bind", metavar="ENDPOINT",
                   help="publish latency records live here for `headcast bench latency --attach` (loopback unless --insecure)")
    p.add_argument("--refine", default="auto", choices=["auto", "on", "off"],
                   help="the avatars' screen-space refinement (whole-head packages): auto = where the package "
                        "made it the default (with CUDA where it measured better; on the CPU only within "
                        "budget), on = wherever a package has one, off (default auto)")
    p.add_argument("--optical-marker", action="store_true",
                   help="draw an optical frame counter (ArUco marker) in each eye's corner, for headcast bench glass")
    p.add_argument("--frame-feed", metavar="ENDPOINT",
                   help="headless: publish each frame when it is shown, for a capture node's feed:ENDPOINT source "
                        "(headcast bench glass without a camera; loopback)")
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
    web.add_argument("--spectator-eye", default="left", choices=["left", "right", "free"],
                     help="what the page and the virtual camera show: an eye (default left; mono backends: the only "
                          "one), or 'free': a camera of its own (--spectator-camera), one extra draw per shown frame")
    web.add_argument("--spectator-camera", metavar="X,Y,Z", default=None,
                     help="with --spectator-eye free: where the camera stands (scene metres; default: behind the "
                          "viewer's right shoulder), looking at the avatars; the picture has the --size of an eye")
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
        raise HeadcastError(f"--size must look like 640x480, got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise HeadcastError(f"--size {text} out of range")
    return w, h


def free_camera(scene, where: str | None, size: tuple[int, int]):
    """A FreeCamera at `where` ("X,Y,Z"; default: behind the viewer's right shoulder) looking at the
    middle of the scene's avatar slots."""
    import numpy as np

    from xr_runtime.spectator.tap import FreeCamera

    viewer = np.asarray(scene.viewer.position, dtype=float)
    slots = [np.asarray(slot.transform.position, dtype=float) for slot in scene.avatars]
    target = np.mean(slots, axis=0) if slots else viewer + (0.0, 0.0, -1.0)
    if where:
        try:
            position = tuple(float(v) for v in where.split(","))
        except ValueError:
            raise HeadcastError(f"--spectator-camera takes X,Y,Z, got {where!r}") from None
        if len(position) != 3:
            raise HeadcastError(f"--spectator-camera takes X,Y,Z, got {where!r}")
    else:
        position = tuple(viewer + (0.35, 0.12, 0.45))
    if np.linalg.norm(np.asarray(position) - target) < 1e-3:
        raise HeadcastError("--spectator-camera stands where it looks")
    return FreeCamera(position, tuple(float(v) for v in target), width=size[0], height=size[1])


def spectator_config(args, scene=None):
    """The --web / --virtual-camera flags as a SpectatorConfig, or None when neither is given."""
    from xr_runtime.spectator.outputs import SpectatorConfig

    if not args.web and not args.virtual_camera:
        if args.web_public or args.web_token_file:
            raise HeadcastError("--web-public and --web-token-file need --web")
        return None
    web = camera = None
    if args.web:
        from xr_runtime.web.server import WebConfig

        token = None
        if args.web_token_file is not None:
            try:
                token = args.web_token_file.read_text().strip()
            except OSError as exc:
                raise HeadcastError(f"--web-token-file: {exc}") from exc
            if len(token) < 16:
                raise HeadcastError("--web-token-file: a token needs at least 16 characters")
        web = WebConfig.parse(args.web, public=args.web_public, token=token, max_viewers=args.web_max_viewers)
    if args.virtual_camera:
        from xr_runtime.spectator.virtual_camera import VirtualCameraConfig

        w, h = _parse_size(args.virtual_camera_size)
        camera = VirtualCameraConfig(width=w, height=h, fps=args.virtual_camera_fps,
                                     device=None if args.virtual_camera == "auto" else args.virtual_camera)
    if args.web_fps <= 0:
        raise HeadcastError("--web-fps must be positive")
    free = None
    if args.spectator_eye == "free":
        free = free_camera(scene, args.spectator_camera, _parse_size(args.size))
    elif args.spectator_camera:
        raise HeadcastError("--spectator-camera needs --spectator-eye free")
    return SpectatorConfig(eye=1 if args.spectator_eye == "right" else 0, web=web, web_fps=args.web_fps,
                           camera=camera, free_camera=free)


def run(args) -> int:
    from xr_runtime.avatars.sources import StateSourceConfig
    from xr_runtime.backends.factory import BackendOptions
    from xr_runtime.render_session import RenderSessionConfig, run_render_session
    from xr_runtime.scene.scene_file import Scene, single_avatar_scene

    if args.frames is not None and args.frames < 1:
        raise HeadcastError("--frames must be at least 1")
    if args.face_stream is not None:
        from streaming.protocol import validate_stream_id

        try:
            validate_stream_id(args.face_stream)
        except ValueError as exc:
            raise HeadcastError(f"--face-stream: {exc}") from exc
    elif args.face_server_key or args.face_client_key or args.face_clock:
        raise HeadcastError("--face-server-key, --face-client-key and --face-clock go with --face-stream")
    face_curve = curve_client_from_args(args, prefix="face-")
    scene = Scene.load(args.scene) if args.scene else single_avatar_scene(args.avatar, args.stream)
    if args.save_placements and not args.scene:
        raise HeadcastError("--save-placements needs --scene")
    width, height = _parse_size(args.size)
    from calibration.head_pose import HeadMotionConfig

    cfg = RenderSessionConfig(
        scene=scene, bind=args.bind, curve=curve_server_from_args(args), insecure=args.insecure,
        backend=args.backend,
        backend_options=BackendOptions(width=width, height=height, stereo=args.stereo, fps=args.fps,
                                       paced=not args.unpaced, wake=args.wake, out=args.out,
                                       video_codec=args.video_codec, frame_feed=args.frame_feed, mirror=args.mirror,
                                       graphics=args.graphics, samples=args.samples, refresh_rate=args.refresh_rate,
                                       face_stream=args.face_stream, face_connect=args.face_connect or args.bind,
                                       face_curve=face_curve, face_clock=args.face_clock),
        source=StateSourceConfig(engine=args.engine, device=args.device, dev_avatars=args.dev_avatars, pacing=args.engine_pacing,
                                 head_motion=HeadMotionConfig() if args.head_motion else None),
        frames=args.frames, seconds=args.seconds, reconnects=args.reconnects, clock_bind=args.clock_bind,
        latency_bind=args.latency_bind, save_scene_to=args.scene if args.save_placements else None,
        optical_marker=args.optical_marker, refinement=args.refine, spectator=spectator_config(args, scene))
    stats, node = run_render_session(cfg, say=lambda line: print(line, flush=True))
    s = stats["stages_ms"]
    p50 = lambda d: float("nan") if d.get("p50") is None else d["p50"]  # noqa: E731
    print(f"{stats['frames']} frames in {stats['seconds']:.2f} s ({stats['fps']:.1f} fps); frame "
          f"p50 {p50(s['frame']):.2f} ms, draw p50 {p50(s['draw']):.2f} ms", flush=True)
    refine = stats.get("refinement", {})
    if refine.get("paths"):
        paths = ", ".join(f"{k}: {v}" for k, v in refine["paths"].items())
        ms = refine.get("correction_ms_p50")
        print(f"refinement: {paths}" + (f"; {refine['eyes_refined']} eyes refined, correction p50 {ms:.2f} ms"
                                        if ms is not None else ""), flush=True)
    if args.out is not None:
        print(f"wrote {args.out}", flush=True)
    if args.latency_trace:
        trace = {k: v.tolist() for k, v in node.latency.times().items()}
        trace["seq"] = [seq for _, seq in node.latency.sequence_numbers()]
        if args.optical_marker:
            trace["markers_shown"] = [list(m) for m in node.markers_shown]
        write_json(args.latency_trace, trace)
    if args.json:
        atomic_write_json(args.json, stats, default=str)
    return 0
