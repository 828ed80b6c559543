"""`headcast avatar info DIR...`: validate avatar packages and summarise them."""
from __future__ import annotations

import json
from pathlib import Path

from core.errors import HeadcastError


def register(sub) -> None:
    p = sub.add_parser("avatar", help="inspect avatar packages")
    asub = p.add_subparsers(dest="avatar_command", metavar="ACTION")
    asub.required = True
    info = asub.add_parser("info", help="validate packages and print their summaries (parameters, decode ms)")
    info.add_argument("dir", metavar="DIR", nargs="+", help="package directories (each validated; exit 2 if any "
                                                             "is not a valid package)")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=run_info)
    default = asub.add_parser("default", help="print the default avatar's path, building it from the sample "
                                              "clip on first use (cached in the user cache afterwards)")
    default.add_argument("--quick", action="store_true", help="the fast low-resolution variant")
    default.set_defaults(func=run_default)
    turn = asub.add_parser("turntable", help="render a 360° turn (neutral, then smiling) to an MP4 and measure holes "
                                             "(background showing inside the head's outline) at every yaw")
    turn.add_argument("dir", metavar="DIR")
    turn.add_argument("--out", type=Path, required=True, metavar="TURN.mp4")
    turn.add_argument("--size", type=int, default=256)
    turn.add_argument("--yaws", type=int, default=72, help="views per turn (default 72: every 5°)")
    turn.add_argument("--json", type=Path, metavar="FILE", help="hole fraction per yaw")
    turn.set_defaults(func=run_turntable)


def default_avatar_dir(quick: bool = False) -> Path:
    from tools.samples import cache_dir

    return cache_dir() / "avatars" / ("default-woman-quick" if quick else "default-woman")


def ensure_default_avatar(quick: bool = False, log=print) -> Path:
    """The default avatar package (sample woman clip), built on first call; a valid existing package
    with an animation network from this builder version is returned at once. A cached package
    without one, or from another builder version, is rebuilt in place: the export replaces it
    atomically, and the work directory's finished stages are reused. Media of real people never enter the repository: both
    the clip and the package live in the user cache."""
    from inference.avatar_package import AvatarPackage, AvatarPackageError
    from inference.builder import BUILDER_VERSION, BuildConfig, BuildError, build_avatar
    from tools import samples

    out = default_avatar_dir(quick)
    reason = "first run only"
    try:
        pkg = AvatarPackage.load(out)
        built_by = pkg.manifest.raw.get("provenance", {}).get("builder_version")
        if pkg.animation is None:
            reason = "the cached package has no animation network (built by an older version)"
        elif built_by != BUILDER_VERSION:
            reason = f"the cached package was built by builder version {built_by}, this is {BUILDER_VERSION}"
        else:
            return out
    except AvatarPackageError:
        pass
    try:
        video = samples.sample_path(samples.AVATAR_CLIP)
    except samples.SampleError as exc:
        raise HeadcastError(str(exc)) from exc
    work = out.parent / ".work" / out.name
    log(f"building the default avatar {out} from {video.name} ({reason})")
    cfg = BuildConfig.preset([str(video)], out, work, quick=quick,
                             command=f"headcast avatar default{' --quick' if quick else ''}")
    try:
        build_avatar(cfg, log=log)
    except BuildError as exc:
        raise HeadcastError(str(exc)) from exc
    return out


def run_default(args) -> int:
    print(ensure_default_avatar(quick=args.quick))
    return 0


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _short(what: str) -> str:
    """The name part of a manifest ``weights`` description ("head model VAE decoder: z -> ...")."""
    return what.split(":")[0].split(" (")[0]


def _animation_summary(block: dict) -> dict | None:
    """The animation block's essentials: window T, layers, width, held-out metrics."""
    if not block.get("included"):
        return None
    cfg, met = block["config"], block.get("metrics") or {}
    res = cfg.get("residual") or {}
    return {"arch": cfg["arch"], "window": block["window"], "layers": cfg["layers"], "hidden": cfg["hidden"],
            "residual_code_dim": res.get("code_dim", 0) if res.get("enabled", False) else 0,
            "feature_kind": block["feature_kind"], "feature_dim": block["feature_dim"],
            "parameters": block["parameters"], "holdout": met.get("holdout"), "frames": met.get("frames"),
            "train_seconds": met.get("seconds")}


def run_info(args) -> int:
    """Each DIR validated in turn: a valid one is summarised, an invalid one is one error line."""
    import sys

    from inference.avatar_package import AvatarPackage, AvatarPackageError

    dirs = args.dir if isinstance(args.dir, list) else [args.dir]
    if len(dirs) == 1:
        try:
            pkg = AvatarPackage.load(dirs[0])
        except AvatarPackageError as exc:
            raise HeadcastError(str(exc)) from exc
        return _info(pkg, args.json)
    failed = 0
    for d in dirs:
        try:
            pkg = AvatarPackage.load(d)
        except AvatarPackageError as exc:
            print(f"headcast avatar: error: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        _info(pkg, args.json)
    return 2 if failed else 0


def _info(pkg, as_json: bool) -> int:
    from inference.avatar_package import WEIGHTS, read_weights_header
    from inference.head_model.metrics import decode_ms

    m = pkg.manifest.raw
    params = sum(p.numel() for p in pkg.decoder.parameters())
    ms = decode_ms(pkg.decoder, pkg.manifest.z_dim, threads=1)
    ms2 = decode_ms(pkg.decoder, pkg.manifest.z_dim, threads=2)
    summary = {
        "path": str(pkg.path), "valid": True, "name": m["name"], "schema_version": m["schema_version"],
        "feature_kind": m["feature"]["kind"], "z_dim": pkg.manifest.z_dim, "texture_size": pkg.manifest.texture_size,
        "n_blendshapes": pkg.manifest.n_blendshapes, "vertices": int(len(pkg.mesh.positions)),
        "triangles": int(len(pkg.mesh.indices)), "decoder_parameters": int(params),
        "decode_ms_this_machine": round(ms, 3), "decode_ms_this_machine_2threads": round(ms2, 3), "animation_included": pkg.manifest.animation_included,
        "metrics": m["metrics"], "sources": m["provenance"]["sources"], "created_utc": m["created_utc"],
        "animation": _animation_summary(m["animation"]),
        "package_bytes": sum(f.stat().st_size for f in pkg.path.iterdir() if f.is_file()),
        "weights": {"bytes": (pkg.path / WEIGHTS).stat().st_size, "holds": pkg.manifest.weights_holds,
                    "not_included": m.get("weights", {}).get("not_included", {}),
                    "header": read_weights_header(pkg.path / WEIGHTS)},
    }
    torso = m.get("torso")
    summary["torso"] = None if torso is None else {
        "included": bool(torso.get("included")), "reason": torso.get("reason", ""),
        "vertices": int(len(pkg.mesh.torso.positions)) if pkg.mesh.torso is not None else 0,
        "shoulder_width_m": torso.get("shoulder_width_m")}
    if as_json:
        print(json.dumps(summary, indent=2))
        return 0
    met = m["metrics"]
    print(f"{pkg.path}: valid avatar package (schema v{m['schema_version']}), '{m['name']}'")
    print(f"  features {summary['feature_kind']}; z {summary['z_dim']}; texture {summary['texture_size']}² RGBA8; "
          f"{summary['n_blendshapes']} blendshapes; mesh {summary['vertices']} vertices, {summary['triangles']} triangles")
    w = summary["weights"]
    print(f"  package {summary['package_bytes'] / 1e6:.1f} MB; {WEIGHTS} {w['bytes'] / 1e6:.1f} MB holds "
          + ", ".join(f"{k}* ({_short(v)})" for k, v in w["holds"].items())
          + "".join(f"; not included: {k}* ({_short(v)})" for k, v in w["not_included"].items()))
    print(f"  decoder {params:,} parameters; decode {ms:.2f} ms on this machine (CPU, 1 thread; "
          f"{ms2:.2f} ms with 2 threads; median of 50)")
    print(f"  held-out PSNR {met.get('holdout_psnr_db')} dB, SSIM {met.get('holdout_ssim')}, "
          f"reprojection {met.get('holdout_reprojection_px')} px")
    a = summary["animation"]
    if a is None:
        print("  animation network: not included (head model only)")
    else:
        ho = a["holdout"] or {}
        print(f"  animation network: {a['arch']} T={a['window']}, {a['layers']} layer(s) × {a['hidden']}, "
              f"residual code {a['residual_code_dim']}, {a['parameters']:,} parameters, features {a['feature_kind']} "
              f"({a['feature_dim']}); held-out z R² {_fmt(ho.get('z_r2'))}, weights R² {_fmt(ho.get('weights_r2'))}, "
              f"z r {_fmt(ho.get('z_corr'))}")
    t = summary["torso"]
    if t is not None:
        print(f"  torso: {t['vertices']} vertices, {t['shoulder_width_m']} m across the shoulders (drawn with the body "
              "transform)" if t["included"] else f"  torso: none ({t['reason']})")
    for s in summary["sources"]:
        print(f"  source {s['name']} sha256 {s['sha256'][:16]}…")
    return 0


def run_turntable(args) -> int:
    from core.progress import progress_bar
    from inference.avatar_package import AvatarPackage, AvatarPackageError
    from inference.engine.package_loader import idle_z
    from inference.head_model.turntable import TurntableConfig, turntable
    from media.video_writer import Mp4Writer
    from tools.bench_common import write_json

    if not (64 <= args.size <= 2048) or not (4 <= args.yaws <= 720):
        raise HeadcastError("--size must be 64..2048 and --yaws 4..720")
    try:
        pkg = AvatarPackage.load(Path(args.dir))
    except AvatarPackageError as exc:
        raise HeadcastError(str(exc)) from exc
    cfg = TurntableConfig(size=args.size, yaws=args.yaws)
    holes: dict[str, list] = {}
    writer = Mp4Writer(args.out, nominal_fps=24.0)
    try:
        with progress_bar(total=2 * cfg.yaws, desc="turntable", unit="f") as bar:
            for name, yaw, rgb, hole in turntable(pkg, idle_z(pkg), cfg, on_frame=lambda: bar.update(1)):
                writer.write(rgb, pixel_format="rgb24")
                holes.setdefault(name, []).append([round(yaw, 2), round(hole, 5)])
    except BaseException:
        writer.abort()
        raise
    writer.close()
    worst = {k: max(v, key=lambda r: r[1]) for k, v in holes.items()}
    ok = all(w[1] <= 0.01 for w in worst.values())
    for k, (yaw, h) in worst.items():
        print(f"{k:<8} worst holes {h * 100:.2f} % of the outline at yaw {yaw:.0f}°")
    print(f"holes ≤ 1 % at every yaw: {'MET' if ok else 'NOT MET'}; wrote {args.out}")
    if args.json:
        write_json(args.json, {"avatar": str(args.dir), "video": str(args.out), "size": cfg.size, "yaws": cfg.yaws,
                               "holes_by_yaw": holes, "worst": worst, "target_max": 0.01, "met": ok})
    return 0
