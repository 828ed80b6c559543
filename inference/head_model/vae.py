"""The texture + geometry VAE of the head model.

Encoder: (texture, blendshape weights) → (mu, logvar) of z; runs only at build time.

Decoder: z → (texture, weights), designed for the runtime budget (the whole CPU avatar step must
fit ~16 ms on 2 cores, FACTS.md measured a plain upsample-conv decoder at ~27 ms at 256²). It is a
small MLP to the blendshape weights and to the coefficients of a learned linear texture basis at
half resolution (initialised from PCA of the training textures), plus a full-resolution mean
texture: a handful of matrix products, no convolutions at full resolution. The MLP makes the
latent → coefficient map nonlinear; the basis keeps pixel detail cheap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class VaeConfig:
    texture_size: int = 256  # decoded texture is texture_size² RGBA8
    n_weights: int = 16  # K blendshape weights
    z_dim: int = 48
    hidden: int = 256
    basis_size: int = 128  # resolution of the linear expression basis (upsampled to texture_size)
    n_basis: int = 80

    def to_json(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_json(d: dict) -> "VaeConfig":
        return VaeConfig(**d)


class Encoder(nn.Module):
    """Texture → its coordinates in the training textures' principal subspace (a fixed linear
    projection at basis resolution, set from PCA at build time) → MLP with the weights → (mu, logvar).

    The fixed projection generalises to unseen frames far better than a conv net trained on a few
    hundred frames, and makes training cheap (coefficients are computed once per frame).
    """

    def __init__(self, cfg: VaeConfig):
        super().__init__()
        self.cfg = cfg
        b = cfg.basis_size
        self.register_buffer("proj_mean", torch.zeros(3 * b * b))
        self.register_buffer("proj", torch.zeros(cfg.n_basis, 3 * b * b))  # rows: orthonormal components
        self.register_buffer("proj_scale", torch.ones(cfg.n_basis))  # coefficient std on the training set
        n_in = cfg.n_basis + cfg.n_weights
        self.mlp = nn.Sequential(nn.Linear(n_in, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU())
        self.linear = nn.Linear(n_in, cfg.z_dim)  # linear path: starts as truncated PCA (init_pca_paths)
        self.mu = nn.Linear(cfg.hidden, cfg.z_dim)  # nonlinear residual on top of it
        self.logvar = nn.Linear(cfg.hidden, cfg.z_dim)

    def project(self, texture: torch.Tensor) -> torch.Tensor:
        """texture (B, 3, S, S) in [0, 1] → normalised PCA coefficients (B, n_basis)."""
        b = self.cfg.basis_size
        if texture.shape[-1] != b:
            texture = F.interpolate(texture, size=(b, b), mode="area")
        return ((texture.flatten(1) - self.proj_mean) @ self.proj.T) / self.proj_scale

    def from_coeffs(self, coeffs: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.cat([weights, coeffs], dim=1)
        h = self.mlp(x)
        return self.linear(x) + self.mu(h), self.logvar(h).clamp(-12, 6)

    def forward(self, texture: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.from_coeffs(self.project(texture), weights)


class Decoder(nn.Module):
    def __init__(self, cfg: VaeConfig):
        super().__init__()
        self.cfg = cfg
        self.mlp = nn.Sequential(nn.Linear(cfg.z_dim, cfg.hidden), nn.SiLU(), nn.Linear(cfg.hidden, cfg.hidden), nn.SiLU())
        self.linear = nn.Linear(cfg.z_dim, cfg.n_weights + cfg.n_basis)  # linear path (truncated PCA at init)
        self.to_weights = nn.Linear(cfg.hidden, cfg.n_weights)  # nonlinear residuals
        self.to_coeffs = nn.Linear(cfg.hidden, cfg.n_basis)
        b = cfg.basis_size
        self.basis = nn.Parameter(torch.zeros(cfg.n_basis, 3 * b * b))
        self.mean = nn.Parameter(torch.full((3, cfg.texture_size, cfg.texture_size), 0.5))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (texture (B, 3, S, S) float in ~[0, 1], weights (B, K))."""
        h = self.mlp(z)
        lin = self.linear(z)
        k = self.cfg.n_weights
        b = self.cfg.basis_size
        delta = ((lin[:, k:] + self.to_coeffs(h)) @ self.basis).view(-1, 3, b, b)
        if b != self.cfg.texture_size:
            delta = F.interpolate(delta, size=(self.cfg.texture_size,) * 2, mode="bilinear", align_corners=False)
        return self.mean + delta, lin[:, :k] + self.to_weights(h)

    def decode_weights(self, z: torch.Tensor) -> torch.Tensor:
        """The blendshape weights of ``forward`` alone (B, K), without the texture path (its basis
        product and upsampling are almost all of the decoder's cost): what the animation network's
        geometry loss needs, every training step."""
        k = self.cfg.n_weights
        lin_w = F.linear(z, self.linear.weight[:k], self.linear.bias[:k])
        return lin_w + self.to_weights(self.mlp(z))


def init_pca_paths(encoder: Encoder, decoder: Decoder) -> None:
    """Start the VAE as a truncated PCA: z = (weights, first z-K texture coefficients), decoded back
    by the identity. Coefficients and weights are unit-variance, matching the N(0, 1) prior; the
    nonlinear residual heads start at zero and the posterior starts narrow."""
    cfg = encoder.cfg
    k, z = cfg.n_weights, cfg.z_dim
    n = min(z, k + cfg.n_basis)
    with torch.no_grad():
        for lin in (encoder.linear, decoder.linear):
            lin.weight.zero_()
            lin.bias.zero_()
            lin.weight[torch.arange(n), torch.arange(n)] = 1.0
        for head in (encoder.mu, decoder.to_weights, decoder.to_coeffs):
            head.weight.zero_()
            head.bias.zero_()
        encoder.logvar.weight.mul_(0.01)
        encoder.logvar.bias.fill_(-6.0)


class HeadVae(nn.Module):
    def __init__(self, cfg: VaeConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, coeffs: torch.Tensor, weights: torch.Tensor, noise: torch.Tensor | None = None):
        """coeffs: Encoder.project(texture), precomputed once per frame during training; noise: the
        reparameterisation's N(0, 1) draw (explicit so a resumed run draws the same), None → z = mu."""
        mu, logvar = self.encoder.from_coeffs(coeffs, weights)
        z = mu + noise * torch.exp(0.5 * logvar) if noise is not None else mu
        tex, w = self.decoder(z)
        return tex, w, mu, logvar


class RuntimeDecoder(nn.Module):
    """What the render node runs: z (Z,) or (1, Z) → (texture uint8 (S, S, 4) RGBA, row 0 = V 0 in
    glTF UV convention, ready for a direct RGBA8 upload; weights (K,) float32). With ``alpha`` (the
    whole head's learned edge-on alpha, head_model/alpha_atlas.py) ``.decoder`` is an
    ``AlphaDecoder`` and the texture's A channel carries it; without, A = 255 (opaque)."""

    def __init__(self, decoder: Decoder, alpha=None):
        super().__init__()
        if alpha is not None:
            from inference.head_model.alpha_atlas import AlphaDecoder

            decoder = AlphaDecoder(decoder, alpha)
        self.decoder = decoder.eval()

    @torch.inference_mode()
    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tex, w = self.decoder(z.reshape(1, -1))
        rgba = (tex[0].clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0)
        if rgba.shape[2] == 3:
            alpha = torch.full(rgba.shape[:2] + (1,), 255, dtype=torch.uint8, device=rgba.device)
            rgba = torch.cat([rgba, alpha], dim=2)
        return rgba.contiguous(), w[0]


class PatchDiscriminator(nn.Module):
    """Small PatchGAN critic on texture crops; its per-patch scores push decoded textures sharp."""

    def __init__(self, channels: int = 32):
        super().__init__()
        c = channels
        self.net = nn.Sequential(
            nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 2 * c, 3, 1, 1), nn.LeakyReLU(0.2),
            nn.Conv2d(2 * c, 1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x * 2 - 1)
