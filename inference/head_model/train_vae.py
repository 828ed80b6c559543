"""VAE training: masked L1 on texture, L2 on weights, annealed KL, optional patch adversarial loss.

Resumable: model, critic and optimiser states are checkpointed to safetensors every few seconds
(never pickle) together with the step; batches come from a generator seeded by (seed, step), so a
resumed run draws the same batches it would have drawn.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save as save_bytes

from core.atomic_files import atomic_write_bytes
from inference.head_model.vae import HeadVae, PatchDiscriminator, VaeConfig, init_pca_paths


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch: int = 16
    lr: float = 2e-3
    weight_loss: float = 1.0  # L2 on blendshape weights (unit-variance units)
    kl_max: float = 2e-4  # KL weight after annealing (per-sample KL summed over z)
    kl_anneal: float = 0.3  # fraction of steps over which the KL weight ramps from 0
    adversarial: bool = True
    adv_weight: float = 0.02
    adv_start: float = 0.5  # the critic joins after this fraction of steps (stable reconstruction first)
    adv_crop: int = 64
    basis_lr_scale: float = 0.1
    checkpoint_seconds: float = 15.0
    seed: int = 0


@dataclass(frozen=True)
class RecombinedTextures:
    """Recombined faces (``face_regions``): texture = w · texture[upper] + (1 − w) · texture[lower]."""

    pairs: np.ndarray  # (M, 2) rows of TrainData: [upper-face donor, lower-face donor]
    weights: torch.Tensor  # (M, K) blendshape weights of each recombined face
    texel_weight: torch.Tensor  # (S, S) upper-face weight of every texel
    per_batch: int  # recombined samples added to every batch

    def batch(self, data: "TrainData", m: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(texture (B, 3, S, S) float in [0, 1], soft validity mask (B, S, S), weights (B, K))."""
        up, lo = torch.from_numpy(self.pairs[m, 0]), torch.from_numpy(self.pairs[m, 1])
        w = self.texel_weight
        tex = w * (data.textures[up].float() / 255) + (1 - w) * (data.textures[lo].float() / 255)
        valid = w * data.valid[up].float() + (1 - w) * data.valid[lo].float()
        return tex, valid, self.weights[torch.from_numpy(m)]


@dataclass
class TrainData:
    textures: torch.Tensor  # (N, 3, S, S) uint8, unseen texels already filled from the neutral
    valid: torch.Tensor  # (N, S, S) bool
    weights: torch.Tensor  # (N, K) float32
    train_idx: np.ndarray
    recombined: RecombinedTextures | None = None  # extra samples in every batch


def init_from_pca(vae: HeadVae, data: TrainData) -> None:
    """Mean texture, the encoder's projection and the decoder's linear basis start from the
    training textures' mean and principal components (recombined faces included, as many as there
    are real ones), so training refines rather than discovers the texture space."""
    cfg = vae.cfg
    idx = torch.as_tensor(data.train_idx)
    b = cfg.basis_size

    def small(tex: torch.Tensor) -> torch.Tensor:
        return (F.interpolate(tex, size=(b, b), mode="area") if b != cfg.texture_size else tex).flatten(1)

    with torch.no_grad():
        tex = data.textures[idx].float() / 255
        vae.decoder.mean.copy_(tex.mean(0))
        flat = small(tex)
        del tex
        rc = data.recombined
        if rc is not None and len(rc.pairs):
            m = np.arange(min(len(rc.pairs), len(idx)))
            flat = torch.cat([flat] + [small(rc.batch(data, m[i:i + 64])[0]) for i in range(0, len(m), 64)])
        mean = flat.mean(0)
        _, s, vt = torch.linalg.svd(flat - mean, full_matrices=False)
        n = min(cfg.n_basis, vt.shape[0])
        std = s[:n] / math.sqrt(len(flat))
        enc = vae.encoder
        enc.proj_mean.copy_(mean)
        enc.proj.zero_()
        enc.proj[:n] = vt[:n]
        enc.proj_scale.fill_(1.0)
        enc.proj_scale[:n] = std.clamp_min(1e-6)
        vae.decoder.basis.zero_()
        vae.decoder.basis[:n] = vt[:n] * std[:, None]
        init_pca_paths(vae.encoder, vae.decoder)
        # The decoder's mean is at full resolution; its low-pass part lives in proj_mean already, so
        # the basis adds only the expression deltas.


def _save_checkpoint(path: Path, step: int, vae: HeadVae, disc: PatchDiscriminator | None,
                     opts: dict[str, torch.optim.Optimizer]) -> None:
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in vae.state_dict().items()}
    if disc is not None:
        tensors.update({f"disc.{k}": v.detach().cpu().contiguous() for k, v in disc.state_dict().items()})
    for name, opt in opts.items():
        for pid, st in opt.state_dict()["state"].items():
            for k, v in st.items():
                tensors[f"opt.{name}.{pid}.{k}"] = torch.as_tensor(v).detach().cpu().contiguous()
    atomic_write_bytes(path, save_bytes(tensors, metadata={"step": str(step)}))


def _load_checkpoint(path: Path, vae: HeadVae, disc: PatchDiscriminator | None,
                     opts: dict[str, torch.optim.Optimizer]) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        step = int(f.metadata()["step"])
    t = load_file(str(path))
    vae.load_state_dict({k[6:]: v for k, v in t.items() if k.startswith("model.")})
    if disc is not None:
        disc.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("disc.")})
    for name, opt in opts.items():
        sd = opt.state_dict()
        state: dict[int, dict] = {}
        for k, v in t.items():
            if k.startswith(f"opt.{name}."):
                _, _, pid, key = k.split(".", 3)
                state.setdefault(int(pid), {})[key] = v
        sd["state"] = state
        opt.load_state_dict(sd)
    return step


def train_vae(data: TrainData, vae_cfg: VaeConfig, cfg: TrainConfig, checkpoint: Path, device: str = "cpu",
              on_step: Callable[[int, dict], None] | None = None) -> tuple[HeadVae, dict]:
    torch.manual_seed(cfg.seed)
    vae = HeadVae(vae_cfg)
    init_from_pca(vae, data)
    vae.to(device)
    disc = PatchDiscriminator().to(device) if cfg.adversarial else None
    # The PCA-initialised texture basis and mean learn 10x slower than the MLPs: with a few hundred
    # frames they would otherwise memorise the training textures (train PSNR up, held-out down).
    slow = [vae.decoder.basis, vae.decoder.mean]
    fast = [p for p in vae.parameters() if all(p is not q for q in slow)]
    opts = {"vae": torch.optim.Adam([{"params": fast, "lr_scale": 1.0},
                                     {"params": slow, "lr_scale": cfg.basis_lr_scale}], lr=cfg.lr)}
    if disc is not None:
        opts["disc"] = torch.optim.Adam(disc.parameters(), lr=cfg.lr * 0.5, betas=(0.5, 0.99))
    start = _load_checkpoint(checkpoint, vae, disc, opts) if checkpoint.is_file() else 0
    last_save = time.monotonic()
    history: dict[str, float] = {"resumed_from_step": start}
    train_idx = np.asarray(data.train_idx)
    with torch.no_grad():
        coeffs = torch.cat([vae.encoder.project(data.textures[i:i + 64].float().to(device) / 255)
                            for i in range(0, len(data.textures), 64)])
    for step in range(start, cfg.steps):
        lr = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / cfg.steps)))
        for g in opts["vae"].param_groups:
            g["lr"] = lr * g["lr_scale"]
        gen = np.random.default_rng((cfg.seed, step))
        b = torch.as_tensor(gen.choice(train_idx, size=min(cfg.batch, len(train_idx)), replace=False))
        target = data.textures[b].to(device).float() / 255
        mask = data.valid[b].to(device)[:, None].float()
        w_true = data.weights[b].to(device)
        c = coeffs[b.to(device)]
        rc = data.recombined
        if rc is not None and rc.per_batch > 0:
            m = gen.integers(0, len(rc.pairs), rc.per_batch)
            tex_m, valid_m, w_m = (t.to(device) for t in rc.batch(data, m))
            with torch.no_grad():
                c = torch.cat([c, vae.encoder.project(tex_m)])
            target = torch.cat([target, tex_m])
            mask = torch.cat([mask, valid_m[:, None]])
            w_true = torch.cat([w_true, w_m])
        noise = torch.from_numpy(gen.standard_normal((len(target), vae_cfg.z_dim)).astype(np.float32)).to(device)
        tex, w, mu, logvar = vae(c, w_true, noise)
        l1 = ((tex - target).abs() * mask).sum() / (mask.sum() * 3).clamp_min(1)
        l2 = F.mse_loss(w, w_true)
        kl = (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()
        beta = cfg.kl_max * min(1.0, step / max(1.0, cfg.kl_anneal * cfg.steps))
        loss = l1 + cfg.weight_loss * l2 + beta * kl
        adv_on = disc is not None and step >= cfg.adv_start * cfg.steps
        if adv_on:
            size = min(cfg.adv_crop, vae_cfg.texture_size)
            y, x = (int(v) for v in gen.integers(0, vae_cfg.texture_size - size + 1, size=2))
            crop = (slice(None), slice(None), slice(y, y + size), slice(x, x + size))
            fake = tex[crop] * mask[crop] + target[crop] * (1 - mask[crop])  # judge only observed texels
            loss = loss - cfg.adv_weight * disc(fake).mean()
        opts["vae"].zero_grad(set_to_none=True)
        loss.backward()
        opts["vae"].step()
        if adv_on:
            d_real = disc(target[crop])
            d_fake = disc(fake.detach())
            d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
            opts["disc"].zero_grad(set_to_none=True)
            d_loss.backward()
            opts["disc"].step()
        stats = {"l1": float(l1.detach()), "w_l2": float(l2.detach()), "kl": float(kl.detach()), "beta": beta}
        if on_step is not None:
            on_step(step, stats)
        if time.monotonic() - last_save > cfg.checkpoint_seconds:
            _save_checkpoint(checkpoint, step + 1, vae, disc, opts)
            last_save = time.monotonic()
        history.update(stats)
    _save_checkpoint(checkpoint, cfg.steps, vae, disc, opts)
    return vae.cpu().eval(), history
