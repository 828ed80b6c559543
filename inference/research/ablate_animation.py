"""Ablation harness: per-frame MLP, LSTM without residual encoder, window T = 1/4/8/16.

    python -m inference.research.ablate_animation [--npz DATA.npz] [--cross CROSS.npz ...] [--steps N] [--out TABLE.md]

Every variant is trained by :func:`train_animation` on the same data and scored, with the prior code
(as at inference), on:

* the held-out slice of the training clip (``holdout`` in the npz, or its last 15 %), or with
  ``--folds K`` on each of K contiguous slices in turn (means reported);
* each ``--cross`` clip (another driver's features with the *target's* latents for the same
  expressions — only synthetic data can provide that ground truth; real cross-identity is measured
  end to end by ``headcast eval transfer``).

Columns: z R² (1 − MSE / MSE of the constant mean; 0 = a frozen average face), mean per-dimension
Pearson r, lag in frames (peak of the cross-correlation of ẑ and z, summed over dimensions: a window
must not delay the expression), training seconds and CPU inference ms per window.

Without ``--npz`` it uses synthetic data (inference/research/synthetic.py) and says so in the table:
those numbers show the harness works and how variants compare on a controlled problem, nothing
about real faces. An npz holds ``features`` (N, D), ``z`` (N, Z), ``valid`` (N,) and optionally
``segments`` and ``holdout``; every avatar build leaves exactly that in its work directory
(``animation/animation_data.npz``).
"""
from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from inference.animation.augment import make_runs
from inference.animation.config import AnimationConfig, ResidualEncoderConfig
from inference.animation.train import predict_windows, torch_threads, train_animation
from inference.engine.model import animate, fold_animation, stack_folded

from .synthetic import SyntheticWorld

VARIANTS: dict[str, dict] = {
    "per-frame MLP (T=1, no recurrence)": dict(arch="mlp", window=1),
    "LSTM T=8, no residual encoder": dict(window=8, residual=ResidualEncoderConfig(enabled=False)),
    "LSTM T=1 + residual": dict(window=1),
    "LSTM T=4 + residual": dict(window=4),
    "LSTM T=8 + residual (default)": dict(window=8),
    "LSTM T=16 + residual": dict(window=16),
    "LSTM T=8 + residual, weak KL (0.001)": dict(window=8, residual=ResidualEncoderConfig(kl_weight=0.001)),
}


@dataclasses.dataclass
class Clip:
    name: str
    features: np.ndarray
    z: np.ndarray
    valid: np.ndarray
    segments: np.ndarray | None = None
    holdout: np.ndarray | None = None


def load_npz(path: Path, name: str) -> Clip:
    with np.load(path, allow_pickle=False) as d:
        return Clip(name, d["features"].reshape(len(d["features"]), -1).astype(np.float32), d["z"].astype(np.float32),
                    d["valid"].astype(bool), d["segments"] if "segments" in d else None,
                    d["holdout"].astype(bool) if "holdout" in d else None)


def synthetic_data(seed: int = 0, n: int = 470) -> tuple[Clip, list[Clip]]:
    world = SyntheticWorld(seed=seed)
    target = world.clip(n, person=0, clip_seed=0)
    hold = np.zeros(n, bool)
    hold[int(0.85 * n):] = True
    train = Clip("synthetic target", target.features, target.z, target.valid, None, hold)
    evals = []
    for person, label in ((0, "same person, new clip"), (1, "driver B"), (2, "driver C")):
        c = world.clip(400, person=person, clip_seed=10 + person, invalid_fraction=0.0)
        evals.append(Clip(label, c.features, c.z, c.valid))
    return train, evals


def lag_frames(pred: np.ndarray, ref: np.ndarray, max_lag: int = 4) -> int:
    """Lag (frames) maximising Σ_dims corr(pred[t + lag], ref[t]); positive = prediction late."""
    p = pred - pred.mean(0)
    r = ref - ref.mean(0)
    best, best_lag = -np.inf, 0
    for lag in range(-max_lag, max_lag + 1):
        if lag >= 0:
            a, b = p[lag:], r[: len(r) - lag]
        else:
            a, b = p[: len(p) + lag], r[-lag:]
        den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0)) + 1e-12
        score = ((a * b).sum(0) / den).sum()
        if score > best:
            best, best_lag = score, lag
    return best_lag


def score(net, norm, clip: Clip, mask: np.ndarray | None = None) -> dict:
    n = len(clip.z)
    sel = np.ones(n, bool) if mask is None else mask
    runs = make_runs(clip.valid, np.zeros(n, np.int64), sel)
    xn = torch.from_numpy(norm.apply(clip.features))
    with torch.no_grad():
        pred = predict_windows(net, xn, runs, net.window).numpy()
    ref = clip.z[runs.order]
    mse = float(((pred - ref) ** 2).mean())
    base = float(((net.z_mean.numpy() - ref) ** 2).mean())
    pc, rc = pred - pred.mean(0), ref - ref.mean(0)
    den = np.sqrt((pc ** 2).sum(0) * (rc ** 2).sum(0))
    ok = den > 1e-9
    corr = float(((pc * rc).sum(0)[ok] / den[ok]).mean())
    return {"r2": 1 - mse / max(base, 1e-12), "corr": corr, "lag": lag_frames(pred, ref)}


def infer_ms(net, norm) -> float:
    params = stack_folded([fold_animation(net, norm)])
    x = torch.randn(1, net.window, net.feature_dim)
    times = []
    with torch_threads(1), torch.inference_mode():
        for _ in range(60):
            t = time.perf_counter()
            animate(params, x, net.config.arch, net.config.layers)
            times.append((time.perf_counter() - t) * 1e3)
    return float(np.median(times[10:]))


def fold_holdouts(clip: Clip, folds: int) -> list[np.ndarray]:
    """``folds`` contiguous hold-out slices with equal numbers of valid frames (cross-validation:
    a single ~30-frame slice is too noisy to rank variants)."""
    if folds <= 1:
        hold = clip.holdout if clip.holdout is not None else np.arange(len(clip.z)) >= int(0.85 * len(clip.z))
        return [hold]
    idx = np.flatnonzero(clip.valid)
    out = []
    for chunk in np.array_split(idx, folds):
        h = np.zeros(len(clip.z), bool)
        h[chunk[0]:chunk[-1] + 1] = True
        out.append(h)
    return out


def run_ablation(train: Clip, evals: list[Clip], steps: int | None = None, seeds: tuple[int, ...] = (0,),
                 variants: dict[str, dict] = VARIANTS, folds: int = 1) -> list[dict]:
    rows = []
    for name, overrides in variants.items():
        per_seed = []
        for seed, hold in [(s, h) for s in seeds for h in fold_holdouts(train, folds)]:
            cfg = AnimationConfig(**{**overrides, "seed": seed, **({"steps": steps} if steps else {})})
            t = time.perf_counter()
            net, norm, _ = train_animation(train.features, train.z, train.valid, cfg,
                                           segments=train.segments, holdout=hold)
            secs = time.perf_counter() - t
            res = {"holdout": score(net, norm, train, hold)}
            for c in evals:
                res[c.name] = score(net, norm, c)
            res["train_s"] = secs
            res["infer_ms"] = infer_ms(net, norm)
            per_seed.append(res)
        row = {"variant": name, "config": overrides}
        for key in per_seed[0]:
            if isinstance(per_seed[0][key], dict):
                row[key] = {m: float(np.mean([r[key][m] for r in per_seed])) for m in per_seed[0][key]}
            else:
                row[key] = float(np.mean([r[key] for r in per_seed]))
        rows.append(row)
        print(f"  done: {name}", flush=True)
    return rows


def markdown(rows: list[dict], eval_names: list[str], source: str) -> str:
    cols = ["holdout"] + eval_names
    head = "| variant | " + " | ".join(f"{c}: R² / r / lag" for c in cols) + " | train s | infer ms |"
    sep = "|---|" + "---|" * len(cols) + "---|---|"
    lines = [f"Data: {source}", "", head, sep]
    for r in rows:
        cells = [f"{r[c]['r2']:.3f} / {r[c]['corr']:.3f} / {r[c]['lag']:+.0f}" for c in cols]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + f" | {r['train_s']:.1f} | {r['infer_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m inference.research.ablate_animation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--npz", type=Path, help="training data (features, z, valid[, segments, holdout])")
    ap.add_argument("--cross", type=Path, action="append", default=[], help="extra evaluation clips (npz)")
    ap.add_argument("--steps", type=int, help="override training steps (default: the config's)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds, results averaged")
    ap.add_argument("--folds", type=int, default=1,
                    help="contiguous cross-validation folds over the valid frames (default: the npz's hold-out)")
    ap.add_argument("--out", type=Path, help="write the markdown table here")
    args = ap.parse_args(argv)
    if args.npz:
        train = load_npz(args.npz, "target")
        evals = [load_npz(p, p.stem) for p in args.cross]
        source = f"{args.npz} (+ {', '.join(p.name for p in args.cross) or 'no cross clips'})"
    else:
        train, evals = synthetic_data()
        source = ("SYNTHETIC (inference/research/synthetic.py: 470-frame target clip, held-out last 15 %; "
                  "new clip of the same person; drivers B and C with other landmark responses, gain and "
                  "neutral offset) — shows the harness and relative behaviour, not real-face quality")
    seeds = tuple(int(s) for s in args.seeds.split(","))
    rows = run_ablation(train, evals, args.steps, seeds, folds=args.folds)
    extra = f"; seeds {list(seeds)}" + (f"; {args.folds}-fold contiguous cross-validation (means)" if args.folds > 1 else "")
    if args.steps:
        extra += f"; {args.steps} training steps"
    table = markdown(rows, [c.name for c in evals], source + extra)
    print(table)
    if args.out:
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
