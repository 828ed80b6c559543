"""`headcast bench glass`: the full optical loop — display → camera → features → network → engine
→ display — as a distribution, with the internal stage stamps of the same frames beside it.

    headcast bench glass --json glass.json                     # loop closed without a camera (CI)
    headcast bench glass --camera 0 --backend desktop --json glass.json   # a webcam facing the screen

The render node draws an optical frame counter (`media.optical_marker`) in the corner of what it
shows; the capture node reads it back off every camera frame; a capture frame's own animation is
then shown in turn. `join_loop` pairs them on the render host's clock. Without `--camera` the
render node's headless frames are fed back to the capture node as its camera (`streaming/frame_feed`,
source `feed:ENDPOINT`), through the same tracker and the same marker decoder — the code path is
real, only the optics are missing, so display → camera is then the feed's own delay.

With a webcam: put the render node's window (or the headset mirror) full screen, point the camera
at it so the face and the marker in the bottom-right corner are both in view (the avatar's face is
what the capture node tracks), and run with `--camera N --backend desktop`.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np

from core.errors import HeadcastError
from core.percentiles import percentiles
from media.optical_marker import join_loop
from tools.bench_common import write_json
from xr_runtime.latency.recorder import summarise
from xr_runtime.local_session import SessionConfig, run_session


def register(sub) -> None:
    p = sub.add_parser("glass", help="glass-to-glass latency through an optical frame counter (camera or fed back)")
    p.add_argument("--camera", metavar="INDEX", help="a camera pointed at the render node's display (default: "
                                                      "feed the render node's frames back, no camera)")
    p.add_argument("--seconds", type=float, default=30.0, help="length of the run (default 30)")
    p.add_argument("--avatar", type=Path, help="avatar package (default: the default avatar)")
    p.add_argument("--backend", default="headless", choices=["auto", "openxr", "desktop", "headless"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, required=True, metavar="FILE")
    p.add_argument("--out", type=Path, default=Path("out/bench-glass"), help="working directory for the run")
    p.set_defaults(func=run)


def _free_endpoint() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def run(args) -> int:
    from tools.cmd_avatar import ensure_default_avatar

    avatar = Path(args.avatar or ensure_default_avatar()).resolve()
    # The capture node tracks the avatar's face on the display, so it is shown large: 0.4 m ahead
    # (at the default 1 m the face is ~80 px high in a 640×480 view and the tracker misses it).
    args.out.mkdir(parents=True, exist_ok=True)
    scene = args.out / "glass_scene.json"
    scene.write_text(json.dumps({"version": 1, "avatars": [{"package": str(avatar), "stream": "driver",
                                                            "position": [0.0, 1.6, -0.4]}],
                                 "viewer": {"position": [0.0, 1.6, 0.0]}}))
    render_args = ["--optical-marker"]
    if args.camera is None:
        if args.backend not in ("headless", "auto"):
            raise HeadcastError("without --camera the loop is closed through the headless backend's frames")
        feed = _free_endpoint()
        render_args += ["--frame-feed", feed]
        source, backend = f"feed:{feed}", "headless"
    else:
        source, backend = str(args.camera), args.backend
    result = run_session(SessionConfig(avatar=avatar, source=source, out_dir=args.out, seconds=args.seconds,
                                       backend=backend, device=args.device, realtime=False, loop=False,
                                       video=False, latency_trace=True, echo=False,
                                       extra_render_args=tuple(render_args), scene=scene,
                                       extra_capture_args=("--optical-marker",)))
    trace = json.loads(result.latency_trace.read_text())
    shown = [tuple(m) for m in trace.get("markers_shown", [])]
    redisplayed = {int(seq): int(t) for seq, t in zip(trace.get("seq", []), trace.get("display", []))}
    # Camera times on the render host's clock: the trace's capture column is already mapped through
    # the capture node's clock calibration (two hosts); the capture node's own stamps are not.
    mapped = {int(seq): int(t) for seq, t in zip(trace.get("seq", []), trace.get("capture", []))}
    seen = [(seq, mapped.get(int(seq), t), marker)
            for seq, t, marker in (result.capture_stats or {}).get("optical_markers", [])]
    samples = join_loop(shown, seen, redisplayed)
    if not samples:
        raise HeadcastError(
            f"no loop closed: the render node showed {len(shown)} markers, the capture node read {len(seen)}, "
            f"{len(redisplayed)} capture frames were shown in turn (is the marker in the camera's view, and a face?)")
    loop = percentiles([s.loop_ms for s in samples])
    optics = percentiles([s.display_to_camera_ms for s in samples])
    chain = percentiles([s.camera_to_display_ms for s in samples])
    looped = {s.seq for s in samples}
    times = {k: np.asarray(v, np.int64) for k, v in trace.items()
             if k in ("capture", "features", "send", "receive", "inference_start", "inference_end", "upload",
                      "submit", "display")}
    keep = np.array([int(q) in looped for q in trace["seq"]])
    stamps = summarise({k: v[keep] for k, v in times.items()})
    print(f"{'':<30}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, p in (("loop (display → display)", loop), ("display → camera", optics),
                    ("camera → display (stamps)", chain)):
        print(f"{name:<30}{p['p50']:>9.2f}{p['p95']:>9.2f}{p['p99']:>9.2f}")
    print("internal stages of the same frames:")
    for name, p in stamps.items():
        print(f"  {name:<28}{p['p50']:>9.2f}{p['p95']:>9.2f}{p['p99']:>9.2f}")
    print(f"{len(samples)} loops from {len(seen)} marker readings ({'camera ' + args.camera if args.camera else 'fed back, no camera'})")
    write_json(args.json, {"benchmark": "glass", "seconds": args.seconds, "source": source, "backend": backend,
                           "loops": len(samples), "markers_shown": len(shown), "markers_read": len(seen),
                           "loop_ms": loop, "display_to_camera_ms": optics, "camera_to_display_ms": chain,
                           "stages_ms_of_looped_frames": stamps, "capture": result.capture_stats,
                           "render_fps": result.render_stats.get("fps")})
    print(f"wrote {args.json}")
    return 0
