"""`headcast bench latency`: camera-to-photon latency of the whole pipeline, stage by stage.

Runs a capture node (the sample driver clip paced in real time, or a camera) and a render node as
two local processes, then reports per stage p50/p95/p99, end to end, and latency creep (the slope
of end-to-end latency over the run). The plot stacks the stages over time and shows their
distributions.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from core.errors import HeadcastError
from tools import samples
from tools.bench_common import write_json
from xr_runtime.latency.publisher import collect_published_latency
from xr_runtime.latency.recorder import creep_ms_per_min, stage_ms, summarise
from xr_runtime.local_session import SessionConfig, run_session

TARGETS = {"end_to_end_p50_ms": 60.0, "end_to_end_p99_ms": 100.0, "creep_ms_per_min": 0.5}


def register(sub) -> None:
    p = sub.add_parser("latency", help="camera-to-photon latency per stage, end to end, and creep over time")
    p.add_argument("--seconds", type=float, default=60.0, help="length of the run (default 60)")
    p.add_argument("--source", help="video file or camera index (default: the sample driver clip, real-time)")
    p.add_argument("--attach", metavar="ENDPOINT",
                   help="measure a running render node instead (its --latency-bind endpoint) for --seconds")
    p.add_argument("--avatar", type=Path, help="avatar package (default: the default avatar)")
    p.add_argument("--backend", default="headless", choices=["auto", "openxr", "desktop", "headless"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", type=Path, required=True, metavar="FILE")
    p.add_argument("--plot", type=Path, metavar="FILE.png")
    p.add_argument("--out", type=Path, default=Path("out/bench-latency"), help="working directory for the run")
    p.set_defaults(func=run)


def plot(times: dict[str, np.ndarray], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = stage_ms(times)
    e2e = stages.pop("end_to_end")
    t_min = (times["display"] - times["display"][0]) / 6e10
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5), gridspec_kw={"width_ratios": [3, 2]})
    ax1.stackplot(t_min, *[np.clip(v, 0, None) for v in stages.values()], labels=list(stages), alpha=0.85)
    ax1.set_xlabel("time in run (min)")
    ax1.set_ylabel("latency (ms), stacked by stage")
    ax1.legend(loc="upper left", fontsize=8, ncol=2)
    ax1.set_title("camera frame → predicted display, per displayed frame")
    ax2.boxplot(list(stages.values()) + [e2e],
                tick_labels=list(stages) + ["end to end"], showfliers=False, vert=False)
    ax2.set_xlabel("ms")
    ax2.set_title("distribution per stage")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(args) -> int:
    if args.attach:
        from core.progress import seconds_bar

        with seconds_bar(args.seconds, "attached"):
            times = collect_published_latency(args.attach, args.seconds)
        if len(times["display"]) == 0:
            raise HeadcastError(f"no latency records from {args.attach} in {args.seconds:.0f} s: is a render node "
                           "running there with --latency-bind, and is an avatar being driven?")
        return report(args, times, {"attached": args.attach}, {}, None)
    return run_local(args)


def run_local(args) -> int:
    from tools.cmd_avatar import ensure_default_avatar

    if args.source is None:
        try:
            source = str(samples.sample_path(samples.DRIVER_CLIP))
        except samples.SampleError as exc:
            raise HeadcastError(str(exc)) from exc
        is_file = True
    else:
        source, is_file = args.source, not args.source.isdigit()
    avatar = args.avatar or ensure_default_avatar()
    from core.progress import seconds_bar

    with seconds_bar(args.seconds, "latency"):
        result = run_session(SessionConfig(avatar=avatar, source=source, out_dir=args.out, seconds=args.seconds,
                                           backend=args.backend, device=args.device, realtime=is_file, loop=is_file,
                                           video=False, latency_trace=True, echo=False))
    raw = json.loads(result.latency_trace.read_text())
    times = {k: np.asarray(v, dtype=np.int64) for k, v in raw.items() if isinstance(v, list)}
    n = len(times["display"])
    if n == 0:
        raise HeadcastError("no driven frame reached the display: does the avatar carry an animation network?\n"
                       + "\n".join(result.render_log[-10:]))
    return report(args, times, {"source": source, "avatar": str(avatar)}, result.render_stats, result.capture_stats)


def report(args, times: dict[str, np.ndarray], what: dict, render_stats: dict, capture_stats) -> int:
    n = len(times["display"])
    stages = summarise(times)
    creep = creep_ms_per_min(times)
    minutes = (times["display"] - times["display"][0]) / 6e10
    print(f"{'stage':<12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")
    for name, p in stages.items():
        print(f"{name:<12}{p['p50']:>9.2f}{p['p95']:>9.2f}{p['p99']:>9.2f}")
    where = (f"; render {render_stats.get('fps', 0):.1f} fps on {render_stats.get('backend_choice', {}).get('name')}"
             if render_stats else f"; attached to {what.get('attached')}")
    print(f"{n} displayed capture frames over {minutes[-1]:.2f} min; creep "
          f"{'n/a' if creep is None else f'{creep:+.3f} ms/min'}{where}")
    verdicts = {
        "end_to_end_p50_ms": stages["end_to_end"]["p50"] <= TARGETS["end_to_end_p50_ms"],
        "end_to_end_p99_ms": stages["end_to_end"]["p99"] <= TARGETS["end_to_end_p99_ms"],
        "creep_ms_per_min": creep is not None and abs(creep) <= TARGETS["creep_ms_per_min"],
    }
    for k, ok in verdicts.items():
        print(f"target {k} ≤ {TARGETS[k]}: {'MET' if ok else 'NOT MET'}")
    write_json(args.json, {
        "benchmark": "latency", "seconds": args.seconds, **what,
        "backend": render_stats.get("backend_choice"), "device": args.device, "frames": n,
        "stages_ms": stages, "creep_ms_per_min": creep, "targets": TARGETS, "met": verdicts,
        "render_fps": render_stats.get("fps"), "render_stages_ms": render_stats.get("stages_ms"),
        "capture": capture_stats, "unmapped_clock_frames": render_stats.get("latency", {}).get("unmapped_clock_frames"),
    })
    if args.plot:
        plot(times, args.plot, f"headcast bench latency: {n} frames, {args.seconds:.0f} s, {args.device}")
        print(f"wrote {args.plot}")
    print(f"wrote {args.json}")
    return 0
