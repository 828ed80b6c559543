"""`headcast bench web`: what the live page (`render --web`) costs the frame loop and adds to
latency — the same run with and without a viewer (xr_runtime/web/cost_bench.py)."""
from __future__ import annotations

import os
from pathlib import Path

from tools import samples
from tools.bench_common import machine_info, write_json
from core.errors import HeadcastError


def register(sub) -> None:
    p = sub.add_parser("web", help="live page cost: render fps/frame time with and without a viewer, alternating")
    p.add_argument("--json", type=Path, required=True, metavar="FILE")
    p.add_argument("--avatar", type=Path, metavar="DIR", help="avatar package (default: the default avatar)")
    p.add_argument("--driver", type=Path, metavar="VIDEO", help="capture clip, replayed in real time (default: sample)")
    p.add_argument("--phase-seconds", type=float, default=8.0, help="length of each phase (default 8)")
    p.add_argument("--cycles", type=int, default=3, help="viewer phases, each between two unwatched ones (default 3)")
    p.add_argument("--size", default="640x480", metavar="WxH")
    p.add_argument("--fps", type=float, default=60.0, help="headless render rate (paced; default 60)")
    p.add_argument("--web-fps", type=float, default=30.0, help="spectator frames a second (default 30)")
    p.add_argument("--viewer", choices=["browser", "socket"], default=None,
                   help="browser: Debian's headless Chromium on the real page (default where installed); "
                        "socket: a client that acknowledges frames without decoding them")
    p.set_defaults(func=run)


def _ms(p: dict) -> str:
    return "-" if p.get("p50") is None else f"{p['p50']:.2f} / {p['p99']:.2f}"


def run(args) -> int:
    from tools.cmd_avatar import ensure_default_avatar
    from xr_runtime.web.chromium import missing_browser
    from xr_runtime.web.cost_bench import PageCostConfig, measure_page_cost

    try:
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise HeadcastError("--size looks like 640x480") from None
    viewer = args.viewer or ("socket" if missing_browser() else "browser")
    if viewer == "browser" and (reason := missing_browser()):
        raise HeadcastError(f"--viewer browser: {reason}")
    try:
        driver = args.driver or samples.sample_path(samples.DRIVER_CLIP)
    except samples.SampleError as exc:
        raise HeadcastError(str(exc)) from exc
    avatar = args.avatar or ensure_default_avatar()
    if args.cycles < 1:
        raise HeadcastError("--cycles must be at least 1")
    result = measure_page_cost(PageCostConfig(avatar=avatar, driver=Path(driver), phase_s=args.phase_seconds,
                                              cycles=args.cycles,
                                              width=w, height=h, fps=args.fps, web_fps=args.web_fps, viewer=viewer))
    print(f"{'phase':<14}{'frames':>7}{'fps':>8}{'frame p50/p99 ms':>19}{'draw p50/p99 ms':>18}"
          f"{'end-to-end p50/p99 ms':>24}")
    for i, p in enumerate(result["phases"]):
        name = f"{i + 1} {'viewer' if p['watching'] else 'none'}"
        print(f"{name:<14}{p['frames']:>7}{p['fps']:>8.1f}{_ms(p['frame_ms']):>19}{_ms(p['draw_ms']):>18}"
              f"{_ms(p['end_to_end_ms']):>24}")
    r = result["ratios_viewer_vs_neighbours"]
    fmt = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    print("viewer phase / mean of the unwatched phases around it (median of pairs): " + ", ".join(
        f"{k} {fmt(v['median'])} {v['pairs']}" for k, v in r.items()))
    page = result["page"]["page_latency_ms"]
    print("page latency (eye drawn → shown in the viewer), p50 / p99 ms: " + ", ".join(
        f"{k} {_ms(v)}" for k, v in page.items()))
    print(f"frames: {result['page']['frames_sent']} sent, {result['page']['frames_shown']} acknowledged, "
          f"{result['page']['frames_skipped']} skipped for the viewer; spectator {result['spectator']}")
    for name, e in result["encoders"].items():
        print(f"encoder {name:<17} {e['encode_ms']['p50']:.2f} ms p50, {e['encode_ms']['p99']:.2f} ms p99, "
              f"{e['kB_per_frame']['p50']:.1f} kB/frame p50, first output after {e['frames_until_first_output']} frames")
    result["machine"] = machine_info()
    result["load_average"] = os.getloadavg()
    write_json(args.json, {"benchmark": "web", **result})
    print(f"wrote {args.json}")
    return 0
