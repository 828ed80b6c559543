"""Training windows and cross-driver augmentation.

The network is trained on the target's own frames but driven live by anyone. Augmentation makes
the target's features look like a plausible other driver, capture setup and network:

* **temporal jitter / dropped frames** (window sampling): stepping back from the target frame, each
  step repeats a frame (``repeat_prob``: a slower camera, a held frame) or skips one
  (``skip_prob``: a frame lost on the wire — the engine's ring buffer then simply spans more time).
  The last frame is always the target frame, so the label stays exact.
* **neutral-offset jitter**: a per-window constant offset per dimension — the driver's neutral
  calibration is never exact and the residual stays in every frame.
* **gain jitter**: one log-normal factor per window (more or less expressive driver) times a
  per-dimension factor (expressions move individual points differently from person to person).
* **feature noise** per frame and per dimension (tracker jitter), and **input dropout** on the
  projected inputs.
* **splices**: the older frames of a window replaced by another window's, the newest few kept — an
  expression that changes faster than any in the clip, so the output follows the newest frames.

Windows never cross run boundaries (clip or hold-out borders): near a run's start the first frame
is repeated, which is exactly what the engine does when a stream starts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .config import AugmentConfig


@dataclass(frozen=True)
class Runs:
    """Contiguous usable frames: ``order`` lists frame indices run after run; ``start[k]`` is the
    position in ``order`` where the run holding position k begins."""

    order: np.ndarray  # (M,) int64 frame indices, valid frames only, runs concatenated in time order
    run_start: np.ndarray  # (M,) int64 position of each element's run start within ``order``

    def __len__(self) -> int:
        return int(self.order.shape[0])


def make_runs(valid: np.ndarray, run_id: np.ndarray, select: np.ndarray) -> Runs:
    """Runs over frames with ``valid & select``; a new run starts whenever ``run_id`` changes.

    Invalid frames inside a run are skipped, not run breaks: the engine also ignores face-lost
    frames and keeps the window of the frames it had.
    """
    valid = np.asarray(valid, bool)
    keep = np.flatnonzero(valid & np.asarray(select, bool))
    if keep.size == 0:
        return Runs(np.zeros(0, np.int64), np.zeros(0, np.int64))
    ids = np.asarray(run_id)[keep]
    new_run = np.r_[True, ids[1:] != ids[:-1]]
    starts = np.flatnonzero(new_run)
    run_start = starts[np.cumsum(new_run) - 1]
    return Runs(keep.astype(np.int64), run_start.astype(np.int64))


def run_ids(n: int, segments: np.ndarray | None, holdout: np.ndarray | None) -> np.ndarray:
    """A run id per frame: changes at every segment change and at every hold-out border."""
    seg = np.zeros(n, np.int64) if segments is None else np.asarray(segments, np.int64)
    hold = np.zeros(n, bool) if holdout is None else np.asarray(holdout, bool)
    change = np.r_[True, (seg[1:] != seg[:-1]) | (hold[1:] != hold[:-1])]
    return np.cumsum(change) - 1


def window_positions(runs: Runs, targets: np.ndarray, window: int, cfg: AugmentConfig | None,
                     rng: np.random.Generator) -> np.ndarray:
    """(B, T) frame indices, oldest first, for target positions ``targets`` (indices into runs)."""
    targets = np.asarray(targets, np.int64)
    b = targets.shape[0]
    steps = np.ones((b, window - 1), np.int64)
    if cfg is not None and cfg.enabled and window > 1:
        u = rng.random((b, window - 1))
        steps[u < cfg.repeat_prob] = 0
        steps[(u >= cfg.repeat_prob) & (u < cfg.repeat_prob + cfg.skip_prob)] = 2
    back = np.concatenate([np.zeros((b, 1), np.int64), np.cumsum(steps, axis=1)], axis=1)  # newest first
    pos = np.maximum(targets[:, None] - back, runs.run_start[targets][:, None])
    return runs.order[pos[:, ::-1]]


def augment_features(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Per-window gain and neutral-offset jitter on (B, T, D) normalised windows.

    Per-frame noise is added after the fixed PCA projection (:func:`add_noise`): for an orthonormal
    basis, isotropic noise projected is isotropic noise of the same std in the projected
    coordinates, and drawing (B, T, 48) numbers instead of (B, T, 1434) makes augmentation ~30× cheaper.
    """
    if not cfg.enabled:
        return x
    b, _, d = x.shape

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=x.dtype)

    gain = torch.exp(randn(b, 1, 1) * cfg.gain_log_std) * (1.0 + randn(b, 1, d) * cfg.dim_gain_std)
    offset = randn(b, 1, d) * cfg.offset_std
    return x * gain + offset


def splice_windows(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """(B, T, D) windows, each with probability ``splice_prob`` made of another window of the batch
    up to its newest 1..``splice_keep`` frames, which stay (the target is the newest frame's)."""
    b, t, _ = x.shape
    if not cfg.enabled or cfg.splice_prob <= 0 or t < 2 or b < 2:
        return x
    chosen = torch.rand(b, generator=generator) < cfg.splice_prob
    if not chosen.any():
        return x
    donor = torch.randint(0, b, (b,), generator=generator)
    keep = torch.randint(1, max(1, min(cfg.splice_keep, t - 1)) + 1, (b,), generator=generator)
    older = torch.arange(t)[None, :] < (t - keep)[:, None]  # (B, T): frames taken from the donor
    mask = (older & chosen[:, None])[..., None]
    return torch.where(mask, x[donor], x)


def add_noise(p: torch.Tensor, std: float, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Per-frame feature noise of ``std`` (already in the projected coordinates' units) + input dropout."""
    if not cfg.enabled:
        return p
    out = p + torch.randn(p.shape, generator=generator, dtype=p.dtype) * std
    if cfg.input_dropout > 0:
        keep = (torch.rand(p.shape, generator=generator) >= cfg.input_dropout).to(p.dtype)
        out = out * keep / (1.0 - cfg.input_dropout)
    return out
