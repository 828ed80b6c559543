"""`headcast demo` (= `make demo`): the main job on the embedded default.

A capture node streams the *other* sample person's clip (looped, real-time pacing) — a different
person drives the avatar, which is the point of the method — into a render node showing the
default avatar (built from the sample woman clip on first run, cached afterwards) on the best
backend available: OpenXR if a runtime is active, else a desktop window, else headless writing an
MP4 and a few PNG frames. Both nodes run as real processes talking over a real ZeroMQ socket; the
demo ends with a latency summary and leaves no process behind.
"""
from __future__ import annotations

from pathlib import Path

from core.errors import HeadcastError
from tools import samples
from xr_runtime.latency.recorder import format_creep
from xr_runtime.local_session import SessionConfig, run_session


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the sample clips (make demo)")
    p.add_argument("--seconds", type=float, default=15.0, help="how long to render (default 15)")
    p.add_argument("--camera", type=int, metavar="INDEX", help="drive the avatar with your own face from this camera")
    p.add_argument("--backend", default="auto", choices=["auto", "openxr", "desktop", "headless"])
    p.add_argument("--out", type=Path, default=Path("out/demo"), help="where headless output goes (default out/demo)")
    p.add_argument("--quick-avatar", action="store_true", help="use the --quick default avatar (fast first run)")
    p.add_argument("--device", default="cpu", help="inference device for the render node (cpu, cuda)")
    p.set_defaults(func=run)


def extract_pngs(video: Path, out_dir: Path, count: int = 3) -> list[Path]:
    import cv2

    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    paths = []
    for i in range(1, count + 1):
        idx = n * i // (count + 1)
        cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
        ok, frame = cap.read()
        if ok:
            p = out_dir / f"frame_{idx:05d}.png"
            cv2.imwrite(str(p), frame)
            paths.append(p)
    cap.release()
    return paths


def format_latency(report: dict) -> str:
    stages = report.get("stages_ms", {})
    if not report.get("frames"):
        return "latency: no driven frames were displayed"
    lines = [f"latency over {report['frames']} displayed capture frames (ms)     p50      p95      p99"]
    for name, p in stages.items():
        if p.get("n"):
            lines.append(f"  {name:<44}{p['p50']:>7.2f}  {p['p95']:>7.2f}  {p['p99']:>7.2f}")
    if report.get("creep"):
        lines.append(f"  latency creep: {format_creep(report['creep'])}")
    return "\n".join(lines)


def run(args) -> int:
    from tools.cmd_avatar import ensure_default_avatar

    try:
        source = str(args.camera) if args.camera is not None else str(samples.sample_path(samples.DRIVER_CLIP))
    except samples.SampleError as exc:
        raise HeadcastError(str(exc)) from exc
    avatar = ensure_default_avatar(quick=args.quick_avatar)
    print(f"demo: avatar {avatar}\ndemo: driver {source}", flush=True)
    result = run_session(SessionConfig(avatar=avatar, source=source, out_dir=args.out, seconds=args.seconds,
                                       backend=args.backend, device=args.device,
                                       realtime=args.camera is None, loop=args.camera is None))
    stats = result.render_stats
    print(f"demo: {stats.get('frames', 0)} frames at {stats.get('fps', 0):.1f} fps on "
          f"{stats.get('backend_choice', {}).get('name', '?')}", flush=True)
    print(format_latency(stats.get("latency", {})), flush=True)
    if result.video is not None:
        pngs = extract_pngs(result.video, args.out)
        print(f"demo: wrote {result.video} and {len(pngs)} PNG frames to {args.out}/", flush=True)
    return 0
