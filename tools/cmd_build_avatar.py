"""`headcast build-avatar`: make a personal head avatar package from ordinary video of one person."""
from __future__ import annotations

import shlex
from pathlib import Path

from core.errors import HeadcastError


def register(sub) -> None:
    p = sub.add_parser("build-avatar", help="build an avatar package (head model) from video of one person",
                       description="Tracks every frame, builds the personal head mesh, blendshapes and dynamic "
                                   "textures, trains the VAE and exports an avatar package. Resumable: rerun the "
                                   "same command after an interruption and finished stages are reused.")
    p.add_argument("--video", action="append", required=True, metavar="V", help="source video (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="package directory to write (replaced atomically)")
    p.add_argument("--res", type=int, default=None, metavar="N", help="texture size (default 256, --quick 64)")
    p.add_argument("--quick", action="store_true", help="fast low-resolution build (first contact, tests)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--work", metavar="DIR", help="work directory for stage caches (default: DIR.work beside --out)")
    p.add_argument("--steps", type=int, default=None, help="VAE training steps (default 800, --quick 150)")
    p.add_argument("--animation-steps", type=int, default=None,
                   help="animation network training steps (default 250)")
    p.add_argument("--threads", type=int, default=1, choices=(1, 2),
                   help="CPU threads for torch (default 1: robust on a shared 2-core machine)")
    p.add_argument("--no-whole-head", dest="whole_head", action="store_false",
                   help="face-and-skull model only (no head mattes, no carved hair/ears/outline)")
    adv = p.add_mutually_exclusive_group()
    adv.add_argument("--adversarial", dest="adversarial", action="store_true", default=None,
                     help="train with the patch adversarial loss (default for full builds)")
    adv.add_argument("--no-adversarial", dest="adversarial", action="store_false")
    p.set_defaults(func=run)


def _command_line(args) -> str:
    """The build command as the user would retype it (recorded in the manifest's provenance)."""
    parts = ["headcast", "build-avatar"]
    for v in args.video:
        parts += ["--video", v]
    parts += ["--out", args.out]
    for flag, value in (("--res", args.res), ("--device", args.device), ("--work", args.work), ("--steps", args.steps),
                        ("--animation-steps", args.animation_steps)):
        if value is not None:
            parts += [flag, str(value)]
    if args.quick:
        parts.append("--quick")
    if not args.whole_head:
        parts.append("--no-whole-head")
    if args.adversarial is not None:
        parts.append("--adversarial" if args.adversarial else "--no-adversarial")
    return " ".join(shlex.quote(p) for p in parts)


def run(args) -> int:
    from inference.builder import BuildConfig, BuildError, build_avatar

    if args.res is not None and (args.res < 32 or args.res & (args.res - 1)):
        raise HeadcastError(f"--res must be a power of two ≥ 32, got {args.res}")
    from inference.avatar_package import AvatarPackageError, check_replaceable

    out = Path(args.out)
    try:
        check_replaceable(out.absolute())  # fail before minutes of work, not at the export
    except AvatarPackageError as exc:
        raise HeadcastError(str(exc)) from exc
    work = Path(args.work) if args.work else out.parent / f"{out.name}.work"
    command = _command_line(args)
    cfg = BuildConfig.preset(args.video, out, work, res=args.res, quick=args.quick, device=args.device,
                             adversarial=args.adversarial, steps=args.steps, command=command,
                             animation_steps=args.animation_steps,
                             threads=args.threads, whole_head=args.whole_head)
    print(f"building avatar {out} from {', '.join(args.video)} (work dir {work}{', quick' if args.quick else ''})")
    try:
        result = build_avatar(cfg)
    except BuildError as exc:
        raise HeadcastError(str(exc)) from exc
    m = result.manifest
    b, met = m["build"], m["metrics"]
    rej = ", ".join(f"{k} {v}" for k, v in b["rejected"].items())
    print(f"summary: {b['kept']}/{b['frames']} frames kept (rejected: {rej}); "
          f"K={m['head_model']['n_blendshapes']} blendshapes; z={m['head_model']['z_dim']}; "
          f"texture {m['head_model']['texture_size']}²")
    blocks = ", ".join(f"{lo}–{hi.split(':frame')[-1]}" for lo, hi in b["holdout_frame_ranges"])
    print(f"  held-out frames {blocks}: "
          f"PSNR {met['holdout_psnr_db']:.2f} dB, SSIM {met['holdout_ssim']:.3f}, "
          f"reprojection {met['holdout_reprojection_px']:.2f} px (basis alone {met['holdout_basis_reprojection_px']:.2f})")
    print(f"  decoder {met['decoder_parameters']:,} parameters, {met['decode_ms_cpu_1thread']:.2f} ms per decode (1 CPU thread)")
    print(f"  wrote {result.out} in {result.seconds:.1f} s")
    return 0
