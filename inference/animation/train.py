"""Training the animation network on the target's own frames (called by the avatar builder).

``train_animation(features, z, valid, config, segments=..., holdout=..., decoder=...)``:

* ``features`` (N, D) — or (N, 478, 3) — float32 per frame in time order, extracted by exactly the
  capture node's code path; ``z`` (N, Z) the head model encoder's latents of the same frames;
  ``valid`` (N,) frames whose tracking and latent are trustworthy.
* ``segments`` (N,) int: clip id per frame (windows never cross clips); ``holdout`` (N,) bool: the
  builder's held-out slice (never trained on; metrics are reported on it).
* ``decoder``: the frozen VAE decoder, ``forward(z (B, Z)) -> (texture, weights (B, K))``. With it
  the loss also compares *decoded* blendshape weights (and optionally textures) of ẑ and z, which
  weights latent errors by what they do to the avatar instead of treating all latent dimensions
  alike (KL-starved dimensions barely matter, a mouth dimension matters a lot).

* ``recombined``: extra samples whose upper face comes from one training frame and lower face from
  another (``inference.head_model.face_regions``), with their latents from the head model's
  encoder; a share of every batch is drawn from them (windows of both donors, blended per feature
  dimension), so the network sees eye and mouth combinations the clip never shows together.

Returns the trained :class:`AnimationNet` (eval mode, on CPU), the :class:`FeatureNormalisation`
and a metrics dict (JSON-able) for the manifest.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from .augment import add_noise, augment_features, make_runs, run_ids, splice_windows, window_positions
from .config import AnimationConfig
from .network import AnimationNet
from .normalisation import FeatureNormalisation
from .residual_encoder import ResidualEncoder

Decoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class RecombinedSamples:
    """Training targets for recombined faces (see ``train_animation``)."""

    pairs: np.ndarray  # (M, 2) frame indices: [upper-face donor, lower-face donor]
    z: np.ndarray  # (M, Z) latent of each recombined face (the donors' newest frames)
    feature_weight: np.ndarray  # (D,) in [0, 1]: how much each feature dimension follows the upper donor
    fraction: float = 0.5  # share of every batch drawn from these
    # The target's relaxed face: a relaxed driver's features are ≈ 0 (calibration error and tracker
    # noise aside, which augmentation adds), so windows of zeros are trained towards its latent.
    relaxed_z: np.ndarray | None = None  # (Z,)
    relaxed_per_batch: int = 0


class _Recombiner:
    """Draws recombined windows: both donors' windows (each with its own temporal jitter), blended."""

    def __init__(self, samples: RecombinedSamples, train_runs, n_frames: int, feature_dim: int, batch: int):
        pos = np.full(n_frames, -1, np.int64)
        pos[train_runs.order] = np.arange(len(train_runs))
        pairs = np.asarray(samples.pairs, np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) != len(samples.z):
            raise ValueError(f"recombined pairs {pairs.shape} and z {np.shape(samples.z)} do not match")
        if np.shape(samples.feature_weight) != (feature_dim,):
            raise ValueError(f"recombined feature_weight must have shape ({feature_dim},)")
        ok = (pairs >= 0).all(1) & (pairs < n_frames).all(1)
        ok[ok] = (pos[pairs[ok]] >= 0).all(1)  # both donors must be training frames
        self.positions = pos[pairs[ok]]
        self.z = torch.from_numpy(np.asarray(samples.z, np.float32)[ok])
        self.weight = torch.from_numpy(np.asarray(samples.feature_weight, np.float32))
        self.count = int(round(np.clip(samples.fraction, 0.0, 1.0) * batch)) if len(self.z) else 0
        self.relaxed_z = None if samples.relaxed_z is None else torch.from_numpy(
            np.asarray(samples.relaxed_z, np.float32).reshape(1, -1))
        self.relaxed_count = samples.relaxed_per_batch if self.relaxed_z is not None else 0

    def windows(self, xn: torch.Tensor, runs, window: int, augment, rng) -> tuple[torch.Tensor, np.ndarray]:
        m = rng.integers(0, len(self.z), self.count)
        upper = xn[torch.from_numpy(window_positions(runs, self.positions[m, 0], window, augment, rng))]
        lower = xn[torch.from_numpy(window_positions(runs, self.positions[m, 1], window, augment, rng))]
        return self.weight * upper + (1 - self.weight) * lower, m

    def relaxed(self, zero: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(windows of ``zero`` — the normalised zero feature vector — (R, T, D), their target
        (R, Z)): augmentation adds the driver's calibration offset, gain and tracker noise on top,
        as for every other window."""
        return (zero.reshape(1, 1, -1).expand(self.relaxed_count, window, -1),
                self.relaxed_z.expand(self.relaxed_count, -1))

    def newest(self, xn: torch.Tensor, runs) -> torch.Tensor:
        """Blended newest frames of every sample (for the PCA basis)."""
        upper = xn[torch.from_numpy(runs.order[self.positions[:, 0]])]
        lower = xn[torch.from_numpy(runs.order[self.positions[:, 1]])]
        return self.weight * upper + (1 - self.weight) * lower


@contextlib.contextmanager
def torch_threads(n: int):
    """Sets torch's intra-op threads for a block and restores them (no lasting global change)."""
    old = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def frozen(module: torch.nn.Module | None):
    """Eval mode and no parameter gradients for a borrowed module, restored afterwards."""
    if module is None:
        yield
        return
    was_training = module.training
    flags = [(p, p.requires_grad) for p in module.parameters()]
    module.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, rg in flags:
            p.requires_grad_(rg)
        module.train(was_training)


def _check_inputs(features, z, valid, segments, holdout):
    x = np.asarray(features, dtype=np.float32)
    x = x.reshape(x.shape[0], -1)
    z = np.asarray(z, dtype=np.float32)
    valid = np.asarray(valid, dtype=bool)
    n = x.shape[0]
    if z.ndim != 2 or z.shape[0] != n or valid.shape != (n,):
        raise ValueError(f"features {x.shape}, z {z.shape} and valid {valid.shape} must share N frames")
    for name, a in (("segments", segments), ("holdout", holdout)):
        if a is not None and np.shape(a) != (n,):
            raise ValueError(f"{name} must have shape ({n},), got {np.shape(a)}")
    bad = ~(np.isfinite(x).all(1) & np.isfinite(z).all(1))
    return x, z, valid & ~bad


def train_animation(
    features: np.ndarray,
    z: np.ndarray,
    valid: np.ndarray,
    config: AnimationConfig = AnimationConfig(),
    *,
    segments: np.ndarray | None = None,
    holdout: np.ndarray | None = None,
    decoder: torch.nn.Module | None = None,
    recombined: RecombinedSamples | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[AnimationNet, FeatureNormalisation, dict]:
    t_start = time.perf_counter()
    x_np, z_np, valid = _check_inputs(features, z, valid, segments, holdout)
    n, d = x_np.shape
    hold = np.zeros(n, bool) if holdout is None else np.asarray(holdout, bool)
    rid = run_ids(n, segments, hold)
    train_runs = make_runs(valid, rid, ~hold)
    eval_runs = make_runs(valid, rid, hold)
    if len(train_runs) < 8:
        raise ValueError(f"only {len(train_runs)} valid training frames; need at least 8")

    norm = FeatureNormalisation.fit(x_np[train_runs.order], config.normalisation, config.std_floor)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator().manual_seed(config.seed)

    with torch_threads(config.threads), frozen(decoder):
        torch.manual_seed(config.seed)  # parameter init; the sampling uses its own generators
        xn = torch.from_numpy(norm.apply(x_np))
        x_zero = torch.from_numpy(norm.apply(np.zeros((1, d), np.float32)))[0]
        zt = torch.from_numpy(z_np)
        z_train = zt[torch.from_numpy(train_runs.order)]
        net = AnimationNet(d, z_np.shape[1], config)
        mixer = _Recombiner(recombined, train_runs, n, d, config.batch) if recombined is not None else None
        if mixer is not None and mixer.count == 0 and mixer.relaxed_count == 0:
            mixer = None
        pca_input = xn[torch.from_numpy(train_runs.order)]
        if mixer is not None:  # the basis must span the recombined faces too
            pca_input = torch.cat([pca_input, mixer.newest(xn, train_runs)])
        # Uncentred on purpose in zero_centred mode: the basis must keep "neutral = 0".
        pca_kept = net.fit_pca(pca_input)
        noise_scale = net.noise_scale
        net.z_mean.copy_(z_train.mean(0))
        net.z_scale.fill_(float(torch.sqrt(((z_train - z_train.mean(0)) ** 2).mean()).clamp_min(1e-4)))
        enc = ResidualEncoder(z_np.shape[1], config.residual) if net.code_dim else None

        w_target = w_mixed = w_relaxed = None
        if decoder is not None and config.loss.geometry_weight > 0:
            with torch.no_grad():
                w_target = torch.cat([_decode_weights(decoder, zt[i:i + 256]).float() for i in range(0, n, 256)])
                if mixer is not None:
                    w_mixed = _decode_weights(decoder, mixer.z).float()
                    if mixer.relaxed_z is not None:
                        w_relaxed = _decode_weights(decoder, mixer.relaxed_z).float()

        params = list(net.parameters()) + (list(enc.parameters()) if enc is not None else [])
        opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps,
                                                    pct_start=0.15)
        net.train()
        if enc is not None:
            enc.train()
        loss_hist = []
        for step in range(config.steps):
            targets = rng.integers(0, len(train_runs), config.batch)
            win = torch.from_numpy(window_positions(train_runs, targets, config.window, config.augment, rng))
            last = win[:, -1]
            xb = xn[win]
            zb = zt[last]
            wb = None if w_target is None else w_target[last]
            if mixer is not None and mixer.count:
                xm, m = mixer.windows(xn, train_runs, config.window, config.augment, rng)
                xb = torch.cat([xb, xm])
                zb = torch.cat([zb, mixer.z[m]])
                if wb is not None:
                    wb = torch.cat([wb, w_mixed[m]])
            if mixer is not None and mixer.relaxed_count:
                xr, zr = mixer.relaxed(x_zero, config.window)
                xb, zb = torch.cat([xb, xr]), torch.cat([zb, zr])
                if wb is not None:
                    wb = torch.cat([wb, w_relaxed.expand(len(zr), -1)])
            pb = net.project(augment_features(splice_windows(xb, config.augment, gen), config.augment, gen))
            pb = add_noise(pb, config.augment.noise_std * noise_scale, config.augment, gen)
            code, kl = None, torch.zeros(())
            if enc is not None:
                # The code reads the target latents of the whole window, which recombined samples
                # only have for their newest frame: they get the prior, as at inference.
                mu, logvar = enc((zt[win] - net.z_mean) / net.z_scale)
                code = enc.sample(mu, logvar)
                kl = enc.kl(mu, logvar)
                if len(zb) > len(code):
                    code = torch.cat([code, net.prior_code(len(zb) - len(code), dtype=code.dtype)])
            zhat = net.forward_projected(pb, code)
            loss = config.loss.z_weight * F.mse_loss(zhat, zb) / net.z_scale ** 2
            if enc is not None:
                loss = loss + config.residual.kl_weight * kl
            if wb is not None:
                # Only the weights are needed: a decoder's cheap ``decode_weights`` if it has one,
                # else the full decoder on a subset of the batch (its texture costs the most).
                k = zhat.shape[0] if hasattr(decoder, "decode_weights") else min(config.loss.geometry_samples, zhat.shape[0])
                w_hat = _decode_weights(decoder, zhat[:k])
                loss = loss + config.loss.geometry_weight * F.mse_loss(w_hat.float(), wb[:k])
            if decoder is not None and config.loss.texture_weight > 0 and step % max(1, config.loss.texture_every) == 0:
                k = min(config.loss.texture_samples, zhat.shape[0])
                tex_hat, _ = decoder(zhat[:k])
                with torch.no_grad():
                    tex_ref, _ = decoder(zb[:k])
                loss = loss + config.loss.texture_weight * F.l1_loss(tex_hat.float(), tex_ref.float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            loss_hist.append(float(loss.detach()))
            if progress is not None:
                progress(step + 1, config.steps, loss_hist[-1])

        net.eval()
        with torch.no_grad():
            neutral_window = torch.from_numpy(norm.apply(norm.neutral()))[None, None].expand(1, config.window, d)
            net.neutral_z.copy_(net(neutral_window)[0])
            w_mean = None if w_target is None else w_target[torch.from_numpy(train_runs.order)].mean(0)
            metrics = {
                "train": evaluate(net, xn, zt, train_runs, config.window, decoder, w_target, enc, w_mean),
                "holdout": evaluate(net, xn, zt, eval_runs, config.window, decoder, w_target, enc, w_mean)
                if len(eval_runs) else None,
            }
    metrics.update({
        "frames": {"total": n, "valid": int(valid.sum()), "train": len(train_runs), "holdout": len(eval_runs)},
        "final_loss": float(np.mean(loss_hist[-20:])),
        "seconds": round(time.perf_counter() - t_start, 2),
        "parameters": net.parameter_count(),
        "pca_variance_kept": pca_kept,
        "recombined_samples": 0 if mixer is None else int(len(mixer.z)),
    })
    return net.cpu(), norm, metrics


def _decode_weights(decoder, z: torch.Tensor) -> torch.Tensor:
    if hasattr(decoder, "decode_weights"):
        return decoder.decode_weights(z)
    return decoder(z)[1]


@torch.no_grad()
def predict_windows(net: AnimationNet, xn: torch.Tensor, runs, window: int,
                    code: torch.Tensor | None = None, batch: int = 512) -> torch.Tensor:
    """ẑ for every position of ``runs`` with clean (un-augmented) windows and the prior code."""
    outs = []
    for i in range(0, len(runs), batch):
        pos = np.arange(i, min(i + batch, len(runs)))
        win = torch.from_numpy(window_positions(runs, pos, window, None, np.random.default_rng(0)))
        c = None if code is None else code[i:i + batch]
        outs.append(net(xn[win], c))
    return torch.cat(outs) if outs else torch.zeros(0, net.z_dim)


@torch.no_grad()
def evaluate(net: AnimationNet, xn: torch.Tensor, zt: torch.Tensor, runs, window: int,
             decoder=None, w_target: torch.Tensor | None = None, enc: ResidualEncoder | None = None,
             w_train_mean: torch.Tensor | None = None) -> dict:
    """Errors of ẑ (prior code, i.e. as at inference) against the trivial predictor (training mean z).

    ``z_r2`` = 1 − MSE / MSE(mean): 0 is no better than a constant avatar, 1 is perfect.
    ``z_r2_with_code`` uses the residual encoder's posterior mean: the gap to ``z_r2`` says how much
    the network relies on the code it will not have at inference.
    """
    idx = torch.from_numpy(runs.order)
    z_ref = zt[idx]
    z_hat = predict_windows(net, xn, runs, window)
    mse = float(((z_hat - z_ref) ** 2).mean())
    base = float(((net.z_mean - z_ref) ** 2).mean())
    out = {"z_mse": mse, "z_mse_mean_baseline": base, "z_r2": 1.0 - mse / max(base, 1e-12),
           "z_corr": _mean_corr(z_hat.numpy(), z_ref.numpy())}
    if enc is not None:
        win = torch.from_numpy(window_positions(runs, np.arange(len(runs)), window, None, np.random.default_rng(0)))
        mu, _ = enc((zt[win] - net.z_mean) / net.z_scale)
        z_code = predict_windows(net, xn, runs, window, code=mu)
        out["z_r2_with_code"] = 1.0 - float(((z_code - z_ref) ** 2).mean()) / max(base, 1e-12)
    if decoder is not None and w_target is not None and w_train_mean is not None:
        w_ref = w_target[idx]
        w_hat = torch.cat([_decode_weights(decoder, z_hat[i:i + 256]).float() for i in range(0, len(z_hat), 256)])
        w_base = float(((w_ref - w_train_mean) ** 2).mean())
        w_mse = float(((w_hat - w_ref) ** 2).mean())
        out.update({"weights_mse": w_mse, "weights_r2": 1.0 - w_mse / max(w_base, 1e-12)})
    return out


def _mean_corr(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Pearson r over latent dimensions that actually vary."""
    a = a - a.mean(0)
    b = b - b.mean(0)
    den = np.sqrt((a ** 2).sum(0) * (b ** 2).sum(0))
    ok = den > 1e-9
    if not ok.any():
        return float("nan")
    return float(((a * b).sum(0)[ok] / den[ok]).mean())
