"""Quality metrics on held-out frames: masked texture PSNR / SSIM and geometry reprojection error;
the runtime decoder's CPU decode time."""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F


def masked_psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean over frames of PSNR (dB, peak 1.0) on the masked texels; pred/target (N, 3, H, W) in [0, 1]."""
    m = mask[:, None].float()
    mse = (((pred - target) ** 2) * m).sum((1, 2, 3)) / (m.sum((1, 2, 3)) * 3).clamp_min(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean())


def _gauss(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    return (g[:, None] * g[None, :])[None, None]


def masked_ssim(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """SSIM (11×11 Gaussian window) averaged over texels whose whole window is valid."""
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    k = _gauss().repeat(3, 1, 1, 1)
    def filt(x):
        return F.conv2d(x, k, padding=5, groups=3)
    mu_x, mu_y = filt(pred), filt(target)
    sxx = filt(pred * pred) - mu_x ** 2
    syy = filt(target * target) - mu_y ** 2
    sxy = filt(pred * target) - mu_x * mu_y
    ssim = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    inner = F.conv2d(mask[:, None].float(), torch.ones(1, 1, 11, 11) / 121, padding=5) > 0.999
    m = inner.expand_as(ssim).float()
    return float(((ssim * m).sum((1, 2, 3)) / m.sum((1, 2, 3)).clamp_min(1)).mean())


def reprojection_error_px(face_canon: np.ndarray, rotation: np.ndarray, translation: np.ndarray,
                          scale: np.ndarray, tracked_px: np.ndarray) -> float:
    """Mean 2-D distance (pixels) between reconstructed face points projected with each frame's pose
    and the tracked landmarks. face_canon (N, P, 3), tracked_px (N, ≥P, 3)."""
    p = face_canon.shape[1]
    proj = scale[:, None, None] * np.einsum("npc,nrc->npr", face_canon, rotation) + translation[:, None, :]
    return float(np.linalg.norm(proj[..., :2] - tracked_px[:, :p, :2], axis=-1).mean())


def decode_ms(decoder, z_dim: int, runs: int = 50, threads: int = 1) -> float:
    """Median wall time (ms) of one runtime decode (``RuntimeDecoder``: z → texture, weights) on
    the CPU with ``threads`` intra-op threads, after 5 warm-up decodes."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        z = torch.zeros(z_dim)
        for _ in range(5):
            decoder(z)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            decoder(z)
            times.append(time.perf_counter() - t0)
        return 1000.0 * float(np.median(times))
    finally:
        torch.set_num_threads(before)
