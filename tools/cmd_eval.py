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
    t.add_argument("--driver-start", type=int, default=0, metavar="N",
                   help="drop the driver's first N frames (a driver who smiles from the first frame)")
    t.add_argument("--driver-fps", type=float, metavar="FPS",
                   help="resample the driver to this frame rate (landmarks interpolated in time)")
    t.add_argument("--edit", choices=["wink-right", "wink-left", "gaze-sweep", "smile-start"],
                   help="synthesise a wink or a gaze sweep by editing the driver's tracked landmarks, or "
                        "smile-start: the clip from mid-smile, then the whole clip again")
    t.add_argument("--network-eyes", action="store_true",
                   help="leave the avatar's eyes to the network (no eyelid rig / gaze): the old behaviour")
    t.add_argument("--via", default="mp478", metavar="ROUTE[,ROUTE...]",
                   help="what carries the expression: mp478 (direct, default), expr52 (the named space), livelink, "
                        "vmc, osc (Unified Expressions), each through its real bytes; several (comma-separated) "
                        "run in one invocation and are compared with the first")
    t.set_defaults(func=run_transfer)
    a = esub.add_parser("appearance", help="held-out frames in the source camera's view: silhouette IoU, PSNR/SSIM "
                                           "over the head mattes, still-head shimmer")
    a.add_argument("--avatar", type=Path, required=True, metavar="DIR")
    a.add_argument("--video", type=Path, metavar="V",
                   help="the avatar's training clip (default: its source, when that is a sample clip)")
    a.add_argument("--json", type=Path, required=True, metavar="FILE")
    a.add_argument("--video-out", type=Path, metavar="SIDE_BY_SIDE.mp4",
                   help="source (matted) | avatar [| refined] | face only [| baseline], H.264")
    a.add_argument("--baseline", type=Path, metavar="DIR",
                   help="a second package measured on the same frames (e.g. built with --no-whole-head)")
    a.add_argument("--max-frames", type=int, default=0, help="score at most this many held-out frames (0: all)")
    a.set_defaults(func=run_appearance)


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
                                     target_neutral=args.holdout and args.neutral is None,
                                     eyes=not args.network_eyes, driver_start=args.driver_start,
                                     driver_fps=args.driver_fps, edit=args.edit, via=vias[0]),
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
    _print_eyes(result.get("eyes") or {})
    result["targets"] = {"pearson_r": targets, "max_lag_frames": MAX_LAG, "met": met}
    write_json(args.json, {"evaluation": "transfer", **result})
    print(f"wrote {args.json}")
    return 0


def _source_video(avatar: Path) -> Path:
    """The avatar's first source clip when it is one of the sample clips (fetched if missing)."""
    import json

    from tools.samples import SAMPLES, sample_path

    try:
        sources = json.loads((avatar / "avatar.json").read_text())["provenance"]["sources"]
    except (OSError, KeyError, ValueError) as exc:
        raise HeadcastError(f"{avatar}: not an avatar package ({exc}); pass --video") from exc
    for s in sources:
        name = Path(str(s.get("name", ""))).name
        if name in SAMPLES:
            return sample_path(name)
    raise HeadcastError(f"{avatar}: its source clip is not a sample clip; pass --video with the clip it was built from")


def run_appearance(args) -> int:
    from core.progress import callback, progress_bar
    from tools.eval_appearance import TARGETS, AppearanceConfig, evaluate_appearance

    video = args.video or _source_video(args.avatar)
    with progress_bar(desc="score", unit="f") as bar:
        r = evaluate_appearance(AppearanceConfig(args.avatar, video, args.baseline, args.video_out, args.max_frames),
                                progress=callback(bar))
    print(f"{'model':<11}{'IoU':>7}{'over':>7}{'under':>7}{'PSNR dB':>9}{'SSIM':>7}{'shimmer':>9}   "
          f"({r['scored_frames']} held-out frames, {r['size'][0]}x{r['size'][1]}; over/under: the outline beyond "
          "the head / the head uncovered, shares of the union)")
    for k, m in r["models"].items():
        print(f"{k:<11}{m['iou']:>7.3f}{m['over']:>7.3f}{m['under']:>7.3f}{m['psnr_db']:>9.2f}{m['ssim']:>7.3f}"
              f"{r['still_shimmer'].get(k, 0.0):>9.3f}")
    met = r["targets"]["met"]
    best = r["models"][r["best"]]
    gain_key = "psnr_gain_db_vs_baseline" if "psnr_gain_db_vs_baseline" in r["gains"] else "psnr_gain_db_vs_face_only"
    print(f"{r['best']}: IoU {best['iou']:.3f} (target ≥ {TARGETS['iou']}: {'MET' if met['iou'] else 'NOT MET'}); "
          f"PSNR gain {r['gains'][gain_key]:+.2f} dB {gain_key.removeprefix('psnr_gain_db_')} "
          f"(target ≥ +{TARGETS['psnr_gain_db']}: {'MET' if met['psnr_gain_db'] else 'NOT MET'}); "
          f"shimmer {'MET' if met['shimmer'] else 'NOT MET'}")
    write_json(args.json, r)
    print(f"wrote {args.json}")
    return 0


def _print_eyes(eyes: dict) -> None:
    if not eyes:
        return
    parts = []
    for side in ("right", "left"):
        b = eyes.get(f"blinks_{side}") or {}
        parts.append(f"{side}: range {eyes.get(f'range_share_{side}', float('nan')) * 100:.0f} % of the driver's, "
                     f"blinks {b.get('recalled', 0)}/{b.get('driver_blinks', 0)} (max lag {b.get('max_lag_frames')})")
    print("eyes " + "; ".join(parts))
    if "wink" in eyes:
        w = eyes["wink"]
        c = w["closed_eye"]
        print(f"wink {w['eye']}: closed {c['recalled']}/{c['driver_blinks']}, other eye dropped "
              f"{w['other_eye_drop'] * 100:.0f} % of its range ({'ok' if w['other_eye_ok'] else 'NOT ok'}, ≤ 20 %)")
    for axis in ("x", "y"):
        g = eyes.get(f"gaze_{axis}")
        if g:
            print(f"gaze {axis}: r {g['pearson_r']:.3f}, lag {g['lag_frames']}")
