"""`headcast eval ...`: measurements of the whole method, run as commands (JSON out)."""
from __future__ import annotations

from pathlib import Path

from core.errors import HeadcastError
from tools.bench_common import write_json

# Targets from the issue: self-reenactment on held-out frames, and cross-identity transfer.
SELF_TARGETS = {"mouth_open": 0.9, "eye_open_left": 0.8, "eye_open_right": 0.8}
CROSS_TARGETS = {"mouth_open": 0.8, "smile_width": 0.8}
MAX_LAG = 1


def register(sub) -> None:
    p = sub.add_parser("eval", help="evaluations (expression transfer)")
    esub = p.add_subparsers(dest="evaluation", metavar="WHAT")
    esub.required = True
    t = esub.add_parser("transfer", help="driver video → avatar: does the expression arrive?")
    t.add_argument("--avatar", type=Path, required=True, metavar="DIR")
    t.add_argument("--driver", type=Path, required=True, metavar="VIDEO")
    t.add_argument("--json", type=Path, required=True, metavar="FILE")
    t.add_argument("--video", type=Path, metavar="OUT.mp4", help="driver and avatar side by side (H.264)")
    t.add_argument("--video-codec", default="h264", choices=["h264", "mp4v"],
                   help="codec of --video (default h264: plays in browsers; mp4v: the old MPEG-4 Part 2)")
    rng = t.add_mutually_exclusive_group()
    rng.add_argument("--holdout", action="store_true",
                     help="score only the avatar's held-out frames (self-reenactment: --driver is its training clip)")
    rng.add_argument("--frames", metavar="START:END", help="score only these driver frames")
    t.add_argument("--size", type=int, default=384, help="rendered avatar image size (default 384)")
    t.add_argument("--neutral", type=Path, metavar="FILE",
                   help="driver neutral (headcast calibrate neutral); default: estimated online like the capture node, "
                        "or with --holdout the target's relaxed face its training features were measured against")
    t.add_argument("--via", default="mp478", metavar="ROUTE[,ROUTE...]",
                   help="what carries the expression: mp478 (direct, default), expr52 (the named space), livelink, "
                        "vmc, osc (Unified Expressions), each through its real bytes; several (comma-separated) "
                        "run in one invocation and are compared with the first")
    t.set_defaults(func=run_transfer)


def _run_vias(args, vias, start, end, ranges) -> int:
    """Several routes on the same driver and avatar, in one run: r per signal and its change from the first."""
    from core.progress import callback, progress_bar
    from tools.eval_transfer import EvalConfig, evaluate

    results = {}
    for via in vias:
        with progress_bar(desc=f"track {via}", unit="f") as tracking, progress_bar(desc=f"drive {via}", unit="f") as driving:
            results[via] = evaluate(EvalConfig(args.avatar, args.driver, start, end, ranges, args.size,
                                               neutral=args.neutral, target_neutral=args.holdout and args.neutral is None,
                                               via=via), progress=callback(driving), track_progress=callback(tracking))
    base = vias[0]
    names = list(results[base]["signals"])
    print(f"{'signal':<16}" + "".join(f"{v:>10}" for v in vias) + "   (Pearson r; Δ = route − " + base + ")")
    comparison = {}
    for n in names:
        r = {v: results[v]["signals"][n]["pearson_r"] for v in vias}
        comparison[n] = {v: {"r": r[v], "delta": r[v] - r[base], "lag": results[v]["signals"][n]["lag_frames"]} for v in vias}
        print(f"{n:<16}" + "".join(f"{r[v]:>10.3f}" for v in vias))
    print(f"{'Δ worst':<16}" + "".join(f"{min(comparison[n][v]['delta'] for n in names):>10.3f}" for v in vias))
    write_json(args.json, {"evaluation": "transfer", "vias": list(vias), "comparison": comparison,
                           "results": {v: {k: x for k, x in res.items() if k != "series"} for v, res in results.items()}})
    print(f"wrote {args.json}")
    return 0


def run_transfer(args) -> int:
    from tools.eval_transfer import EvalConfig, evaluate, holdout_ranges

    start, end, ranges = 0, None, None
    if args.holdout:
        try:
            ranges = holdout_ranges(args.avatar, args.driver)
        except (OSError, KeyError, ValueError) as exc:
            raise HeadcastError(f"{args.avatar}: no held-out frames to score ({exc})") from exc
    elif args.frames:
        try:
            a, b = args.frames.split(":")
            start, end = int(a or 0), (int(b) if b else None)
        except ValueError as exc:
            raise HeadcastError("--frames takes START:END") from exc
    from capture.interop.route import VIAS

    vias = [v.strip() for v in str(args.via).split(",") if v.strip()]
    unknown = [v for v in vias if v not in VIAS]
    if not vias or unknown:
        raise HeadcastError(f"--via: unknown route(s) {unknown} (known: {', '.join(VIAS)})")
    if len(vias) > 1:
        return _run_vias(args, vias, start, end, ranges)
    from core.progress import callback, progress_bar

    with progress_bar(desc="track", unit="f") as tracking, progress_bar(desc="drive", unit="f") as driving:
        result = evaluate(EvalConfig(args.avatar, args.driver, start, end, ranges, args.size, video=args.video,
                                     video_codec=args.video_codec, neutral=args.neutral,
                                     target_neutral=args.holdout and args.neutral is None, via=vias[0]),
                          progress=callback(driving), track_progress=callback(tracking))
    targets = SELF_TARGETS if args.holdout else CROSS_TARGETS
    met = {}
    spans = ", ".join(f"{lo}..{hi}" for lo, hi in result["ranges"])
    print(f"{'signal':<16}{'r':>7}{'nMAE':>7}{'lag':>5}   (frames {spans}, {result['scored_frames']} scored)")
    for name, s in result["signals"].items():
        goal = targets.get(name)
        lag = s["lag_frames"]
        ok = None if goal is None else (s["pearson_r"] >= goal and lag is not None and abs(lag) <= MAX_LAG)
        if ok is not None:
            met[name] = ok
        mark = "" if ok is None else (f"  target r≥{goal}, |lag|≤{MAX_LAG}: " + ("MET" if ok else "NOT MET"))
        lag_text = "n/a" if lag is None else str(lag)
        print(f"{name:<16}{s['pearson_r']:>7.3f}{s['nmae']:>7.3f}{lag_text:>5}{mark}")
    if any(s["lag_frames"] is None for s in result["signals"].values()):
        print("lag n/a: too little motion within the scored ranges (or none the avatar shares) to time it by")
    print(f"avatar face found in {result['avatar_face_found_fraction'] * 100:.1f}% of frames; jitter on still "
          f"segments: avatar {result['jitter_still_avatar']:.4f}, driver {result['jitter_still_driver']:.4f}")
    result["targets"] = {"pearson_r": targets, "max_lag_frames": MAX_LAG, "met": met}
    write_json(args.json, {"evaluation": "transfer", **result})
    print(f"wrote {args.json}")
    return 0
