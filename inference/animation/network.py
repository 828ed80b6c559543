"""The animation network: a window of T normalised feature frames (+ residual code) → z of the last frame.

Layout (per frame, then over the window):

    x_t (D) ─ PCA basis (fixed) ─ Linear ─ SiLU ─ dropout ─► p_t (P) ─┐
                                  residual code c ─┴► [p_t, c] ─ LSTM (H, L layers) ─► h_T ─ Linear ─► ẑ

* The fixed PCA basis (top ``pca_dim`` principal directions of the target's normalised training
  features, a buffer stored with the weights) comes first: the clip has ~470 frames but D = 1434
  (mp478) or 2048 (DECA) dimensions, and a free D×P layer memorises the clip (measured: hold-out R²
  well below ridge regression). Landmark motion is low-rank, so ≈ 48 directions keep what the target
  showed, and directions the target never moved along — another driver's idiosyncrasies — are
  projected out, which is the robustness we want.
* The per-frame input projection comes next because D is large (1434 for mp478, 2048 for DECA)
  and the training clip is short (~470 frames): a shared D→P map is the only place that sees all
  dimensions, and the LSTM's 4·H gate matrices then work on P, not D — this keeps the network small
  (≈ 0.2 M parameters at the defaults) and the window cheap to run at inference.
* The window is stateless (the LSTM starts from zeros for every window, as in the paper): an
  arbitrarily long stream can never drift, and a dropped or face-lost stretch is forgotten after T
  frames.
* ``last_frame_skip``: the head sees the newest frame's projected features next to the LSTM's
  final state. Without it the ablation measured ẑ lagging z by 2-4 frames at T = 8 (the recurrence
  smooths); with it the current frame has a direct path and the window only adds context.
* ``arch="mlp"`` is the ablation baseline: the same projection, a two-layer MLP on the last frame
  only, no recurrence.
* The output is ``z_mean + z_scale · head(h)``: the head starts at zero, so an untrained network
  predicts the mean latent, and ``z_scale`` (one scalar, the RMS of the centred latents) keeps the
  head's outputs O(1) without reweighting latent dimensions against each other.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import AnimationConfig


class AnimationNet(nn.Module):
    def __init__(self, feature_dim: int, z_dim: int, config: AnimationConfig):
        super().__init__()
        self.config = config
        self.feature_dim = int(feature_dim)
        self.z_dim = int(z_dim)
        self.code_dim = config.residual.code_dim if config.residual.enabled else 0
        self.pca_dim = min(config.pca_dim, self.feature_dim) if config.pca_dim > 0 else 0
        if self.pca_dim:
            # Set by training (fit_pca); identity-like default only so an untrained net runs.
            self.register_buffer("pca", torch.eye(self.feature_dim, self.pca_dim))
        self.proj = nn.Linear(self.pca_dim or self.feature_dim, config.input_proj)
        self.drop = nn.Dropout(config.dropout)
        core_in = config.input_proj + self.code_dim
        if config.arch == "lstm":
            self.rnn = nn.LSTM(core_in, config.hidden, num_layers=config.layers, batch_first=True,
                               dropout=config.dropout if config.layers > 1 else 0.0)
        else:
            layers: list[nn.Module] = []
            width = core_in
            for _ in range(config.layers + 1):
                layers += [nn.Linear(width, config.hidden), nn.SiLU()]
                width = config.hidden
            self.mlp = nn.Sequential(*layers)
        head_in = config.hidden + (config.input_proj if config.arch == "lstm" and config.last_frame_skip else 0)
        self.head = nn.Linear(head_in, self.z_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.register_buffer("z_mean", torch.zeros(self.z_dim))
        self.register_buffer("z_scale", torch.ones(()))
        # Network output for the neutral window (driver at rest): the engine's idle target.
        self.register_buffer("neutral_z", torch.zeros(self.z_dim))

    @property
    def window(self) -> int:
        return self.config.window

    def prior_code(self, batch: int, device=None, dtype=None) -> torch.Tensor:
        """What the residual input gets at inference: the prior mean, zeros."""
        return torch.zeros(batch, self.code_dim, device=device, dtype=dtype)

    def forward(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, D) normalised features, oldest first; code: (B, C) or None for the prior → (B, Z)."""
        if x.dim() != 3 or x.shape[-1] != self.feature_dim:
            raise ValueError(f"expected (B, T, {self.feature_dim}) features, got {tuple(x.shape)}")
        return self.forward_projected(self.project(x), code)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) normalised features → (B, T, pca_dim) through the fixed basis (identity if off)."""
        return x @ self.pca if self.pca_dim else x

    @property
    def noise_scale(self) -> float:
        """How a unit of feature-space isotropic noise scales in projected coordinates."""
        return float(self.pca.norm(dim=0).max()) if self.pca_dim else 1.0

    def forward_projected(self, x: torch.Tensor, code: torch.Tensor | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        p = self.drop(F.silu(self.proj(x)))
        if self.code_dim:
            if code is None:
                code = self.prior_code(b, x.device, p.dtype)
            p = torch.cat([p, code[:, None, :].expand(b, t, self.code_dim).to(p.dtype)], dim=-1)
        if self.config.arch == "lstm":
            out, _ = self.rnn(p)
            h = out[:, -1]
            if self.config.last_frame_skip:
                h = torch.cat([h, p[:, -1, : self.config.input_proj]], dim=-1)
        else:
            h = self.mlp(p[:, -1])
        return self.z_mean + self.z_scale * self.head(h)

    @torch.no_grad()
    def fit_pca(self, xn: torch.Tensor) -> float:
        """Sets the fixed basis from normalised training frames (M, D); returns variance kept.

        The basis is scaled so the kept components have unit mean variance: the projected inputs
        stay O(1) whatever D is."""
        if not self.pca_dim:
            return 1.0
        xc = xn.double()
        _, s, vh = torch.linalg.svd(xc, full_matrices=False)
        k = min(self.pca_dim, vh.shape[0])
        var = s ** 2 / max(xc.shape[0], 1)
        basis = torch.zeros(self.feature_dim, self.pca_dim, dtype=torch.float64)
        basis[:, :k] = vh[:k].T / torch.sqrt(var[:k].mean()).clamp_min(1e-8)
        self.pca.copy_(basis.float())
        return float(var[:k].sum() / var.sum().clamp_min(1e-12))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())
