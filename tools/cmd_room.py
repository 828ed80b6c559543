"""`headcast room serve` and `headcast join`: a shared room and its participants.

    headcast keys generate keys --client alice --client bob
    headcast room serve --bind tcp://0.0.0.0:7000 --server-key keys/server.key_secret --allow keys/allowed \\
        --scene room.json
    headcast join tcp://roomhost:7000 --name alice --avatar pkgs/alice --camera 0 \\
        --server-key keys/server.key --client-key keys/clients/alice.key_secret
    headcast join tcp://roomhost:7000 --name bob --avatar pkgs/bob --headset-face --backend openxr \\
        --server-key keys/server.key --client-key keys/clients/bob.key_secret   # a headset, no camera

The room uses four ports from the one given (streams in, streams out, control, deltas); see
`room/endpoints.py`. Both commands only parse and print: the room is `room.service`, a participant
`xr_runtime.room_participant`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from core.atomic_files import atomic_write_json
from core.errors import HeadcastError
from tools.net_args import add_client_args, add_server_args, curve_client_from_args, curve_server_from_args
from xr_runtime.avatars.sources import ENGINES

DEFAULT_ROOM = "tcp://127.0.0.1:7000"


def register(sub) -> None:
    p = sub.add_parser("room", help="a shared room: one scene and every participant's streams")
    rsub = p.add_subparsers(dest="room_command", metavar="ACTION")
    rsub.required = True
    s = rsub.add_parser("serve", help="run a room service (stream relay, authoritative scene, avatar packages)")
    add_server_args(s, default_bind=DEFAULT_ROOM)
    s.add_argument("--scene", type=Path, metavar="FILE",
                   help="the room's scene file: reloaded on start when it exists, kept up to date atomically")
    s.add_argument("--packages", type=Path, metavar="DIR", help="avatar package store (default: FILE.packages)")
    s.add_argument("--grace", type=float, default=30.0, metavar="S",
                   help="keep a vanished participant's slot this long (default 30)")
    s.add_argument("--node-timeout", type=float, default=3.0, metavar="S",
                   help="a node silent this long is gone: its grabs are released, its slot is away (default 3)")
    s.add_argument("--max-package-mb", type=float, default=64.0, metavar="MB", help="largest avatar package (64)")
    s.add_argument("--json", type=Path, metavar="FILE", help="write the room's statistics here on exit")
    s.set_defaults(func=run_serve)

    j = sub.add_parser("join", help="join a room: this participant's capture node and render node")
    j.add_argument("room", nargs="?", default=DEFAULT_ROOM, metavar="ROOM", help=f"room endpoint ({DEFAULT_ROOM})")
    j.add_argument("--name", required=True, help="participant name (= stream id; with CURVE: the key's name)")
    j.add_argument("--avatar", required=True, type=Path, metavar="DIR", help="this participant's avatar package")
    src = j.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="N", help="camera index")
    src.add_argument("--video", type=Path, metavar="FILE", help="a video file (looped, at its frame rate)")
    src.add_argument("--no-capture", action="store_true", help="watch only: no capture node")
    src.add_argument("--headset-face", action="store_true",
                     help="no camera: the headset's own face tracking (XR_FB_face_tracking2, XR_HTC_facial_tracking, "
                          "XR_ANDROID_face_tracking) drives this participant's avatar (needs --backend openxr)")
    j.add_argument("--mirror", action="store_true", help="also show one's own avatar")
    j.add_argument("--backend", default="auto", choices=["auto", "openxr", "desktop", "headless"],
                   help="as `render`: OpenXR if a runtime is active, else desktop, else headless")
    j.add_argument("--frames", type=int, metavar="N", help="stop after N rendered frames")
    j.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds")
    j.add_argument("--out", type=Path, metavar="PATH", help="headless output: *.mp4 or a directory for PNG frames")
    j.add_argument("--json", type=Path, metavar="STATS", help="write render statistics as JSON")
    j.add_argument("--size", default="640x480", metavar="WxH", help="desktop/headless eye size")
    j.add_argument("--fps", type=float, default=60.0, help="headless pacing / video rate (default 60)")
    j.add_argument("--engine", default="auto", choices=list(ENGINES), help="what animates the avatars (as render)")
    j.add_argument("--device", default="cpu", help="streaming engine device (cpu, cuda)")
    j.add_argument("--packages", type=Path, metavar="DIR",
                   help="where fetched avatar packages are kept (default: the user cache's room-packages)")
    j.add_argument("--capture-log", type=Path, metavar="FILE", help="the capture node's output (default: discarded)")
    j.add_argument("--heartbeat", type=float, default=0.5, metavar="S", help=argparse.SUPPRESS)
    add_client_args(j)
    j.set_defaults(func=run_join)


def run_serve(args) -> int:
    from room.scene_state import RoomTimeouts
    from room.service import RoomConfig, serve
    from xr_runtime.interrupts import stop_event_on_signals

    if args.grace < 0 or args.node_timeout <= 0 or args.max_package_mb <= 0:
        raise HeadcastError("--grace, --node-timeout and --max-package-mb must be positive")
    cfg = RoomConfig(base=args.bind, scene_file=args.scene, packages_dir=args.packages,
                     curve=curve_server_from_args(args), insecure=args.insecure,
                     timeouts=RoomTimeouts(node_timeout_s=args.node_timeout, grace_s=args.grace),
                     max_package_bytes=int(args.max_package_mb * (1 << 20)))
    with stop_event_on_signals() as stop:
        stats = serve(cfg, stop, say=lambda line: print(line, flush=True))
    r = stats["relay"]
    print(f"room closed: {r['forwarded']} frames forwarded, {r['spoofed']} spoofed, {r['unknown_stream']} unknown, "
          f"{r['malformed']} malformed; {stats['requests']['applied']} edits applied, "
          f"{stats['requests']['refused']} refused", flush=True)
    if args.json:
        atomic_write_json(args.json, stats)
    return 0


def run_join(args) -> int:
    from streaming.protocol import validate_stream_id
    from tools.cmd_render import _parse_size
    from tools.samples import cache_dir
    from xr_runtime.avatars.sources import StateSourceConfig
    from xr_runtime.backends.factory import BackendOptions
    from xr_runtime.render_session import RenderSessionConfig
    from xr_runtime.room_participant import ParticipantConfig, run_participant
    from xr_runtime.scene.scene_file import Scene

    try:
        validate_stream_id(args.name)
    except ValueError as exc:
        raise HeadcastError(f"--name: {exc}") from exc
    if args.frames is not None and args.frames < 1:
        raise HeadcastError("--frames must be at least 1")
    width, height = _parse_size(args.size)
    if args.headset_face and args.backend not in ("auto", "openxr"):
        raise HeadcastError(f"--headset-face needs the openxr backend (a headset's face tracking), not {args.backend}")
    source = None if args.no_capture or args.headset_face else (
        str(args.camera) if args.camera is not None else str(args.video))
    if args.video is not None and not args.video.is_file():
        raise HeadcastError(f"--video {args.video} does not exist")
    render = RenderSessionConfig(
        scene=Scene([]), bind="", backend=args.backend,
        backend_options=BackendOptions(width=width, height=height, fps=args.fps, out=args.out),
        source=StateSourceConfig(engine=args.engine, device=args.device), frames=args.frames, seconds=args.seconds)
    cfg = ParticipantConfig(room=args.room, name=args.name, avatar=args.avatar, source=source, render=render,
                            curve=curve_client_from_args(args), mirror=args.mirror,
                            packages_dir=args.packages or cache_dir() / "room-packages",
                            realtime=True, loop=args.video is not None, capture_log=args.capture_log,
                            heartbeat_interval_s=args.heartbeat, headset_face=args.headset_face)
    stats = run_participant(cfg, say=lambda line: print(line, flush=True))
    room = stats.get("room", {})
    print(f"{stats.get('frames_total', 0)} frames in {stats.get('sessions', 0)} session(s); room version "
          f"{room.get('version')}, {room.get('client', {}).get('resyncs', 0)} resyncs", flush=True)
    if args.json:
        atomic_write_json(args.json, stats, default=str)
    return 0


__all__ = ["register"]
