"""`headcast calibrate ...`: per-driver and per-setup calibrations (neutral face; clock later)."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from calibration.neutral import NeutralError, NeutralEstimateConfig, estimate_neutral
from capture.sources import SourceConfig, SourceError, open_source
from core.errors import HeadcastError
from tools.registry import register_all

# Further calibrations live in their own modules, each with register(calibrate_subparsers),
# like the benchmarks (e.g. tools.calibrate_clock for the capture→render clock offset).
OTHER_CALIBRATIONS = ("tools.calibrate_clock",)


def register(sub) -> None:
    p = sub.add_parser("calibrate", help="calibrations: the driver's neutral face, ...")
    cal_sub = p.add_subparsers(dest="calibration", metavar="WHAT")
    cal_sub.required = True
    _register_neutral(cal_sub)
    register_all(cal_sub, OTHER_CALIBRATIONS)


def _register_neutral(cal_sub) -> None:
    n = cal_sub.add_parser("neutral", help="record a few seconds of a relaxed face and store the driver's neutral")
    n.add_argument("--source", required=True, metavar="CAMERA_INDEX|VIDEO|IMAGE_DIR")
    n.add_argument("--out", required=True, type=Path, metavar="FILE", help="neutral face file to write (.npz)")
    n.add_argument("--seconds", type=float, default=3.0, help="how much of the source to use (default 3 s)")
    n.add_argument("--start", type=float, default=0.0, help="skip this many seconds of a video first")
    n.set_defaults(func=run_neutral)


def collect_canonicals(source_cfg: SourceConfig, seconds: float, start_s: float = 0.0) -> tuple[list[np.ndarray], int, str]:
    """Tracks the source for ``seconds`` (of video time for files, wall time for cameras)."""
    from inference.features.alignment import to_canonical
    from inference.features.face_tracker import FaceTracker

    canon: list[np.ndarray] = []
    frames = 0
    with open_source(source_cfg) as src, FaceTracker() as tracker:
        fps = src.fps or 30.0
        live = source_cfg.spec.strip().isdigit()
        skip = 0 if live else int(round(start_s * fps))
        want = int(round(seconds * fps))
        t_end = time.monotonic() + seconds
        for i, frame in enumerate(src):
            if i < skip:
                continue
            frames += 1
            obs = tracker.track(frame.image)
            if obs is not None:
                c, _ = to_canonical(obs.landmarks_px)
                canon.append(c)
            if (live and time.monotonic() >= t_end) or (not live and frames >= want):
                break
        return canon, frames, src.description


def run_neutral(args) -> int:
    if args.seconds <= 0:
        raise HeadcastError("--seconds must be positive")
    if args.source.strip().isdigit():
        print(f"hold a relaxed, neutral face and look into the camera for {args.seconds:.0f} s...", file=sys.stderr)
    try:
        canon, frames, desc = collect_canonicals(SourceConfig(args.source), args.seconds, args.start)
        neutral = estimate_neutral(canon, NeutralEstimateConfig(), source=desc)
        # Second pass: re-align every frame to the first estimate (Umeyama on stable points) and
        # estimate again, so the stored neutral lives in the same frame the capture node aligns to.
        from inference.features.alignment import STABLE_POINTS, umeyama

        realigned = [umeyama(c[STABLE_POINTS], neutral.canonical[STABLE_POINTS]).apply(c) for c in canon]
        neutral = estimate_neutral(realigned, NeutralEstimateConfig(), source=desc)
        neutral.save(args.out)
    except (SourceError, NeutralError) as exc:
        raise HeadcastError(str(exc)) from exc
    print(f"neutral face from {neutral.frames_used} low-activity frames of {neutral.frames_seen} with a face "
          f"({frames} read from {desc}) → {args.out}")
    return 0
