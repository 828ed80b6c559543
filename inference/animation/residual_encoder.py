"""Residual expression encoder: what the driver's features cannot explain, seen only in training.

At training time it reads the *target's* latents over the window and emits a ``code_dim``-number
code that the animation network receives next to every frame's features. Three things keep the
network from leaning on it (at inference it only ever gets the prior):

* a narrow bottleneck (``code_dim`` ≪ z_dim): it can carry a correction, not the answer;
* a variational code with a KL pull to N(0, I), so information in the code costs loss and the
  prior's mean (zeros, the inference input) is the code's typical value;
* code dropout: for a fraction of windows the code is replaced by the prior, so the network is
  also trained on exactly what it will see at inference.

The encoder reads the last frame's latent and the window's mean latent (centred and scaled like the
network's output): the residual belongs to the frame being predicted, the mean gives it the context
the LSTM also has.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import ResidualEncoderConfig


class ResidualEncoder(nn.Module):
    def __init__(self, z_dim: int, config: ResidualEncoderConfig):
        super().__init__()
        self.config = config
        self.net = nn.Sequential(
            nn.Linear(2 * z_dim, config.hidden), nn.SiLU(),
            nn.Linear(config.hidden, 2 * config.code_dim),
        )

    def forward(self, z_window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_window: (B, T, Z) already centred/scaled → (mu, logvar), each (B, C)."""
        inp = torch.cat([z_window[:, -1], z_window.mean(1)], dim=-1)
        mu, logvar = self.net(inp).chunk(2, dim=-1)
        return mu, logvar.clamp(-8.0, 4.0)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Reparameterised sample, with whole codes dropped to the prior mean at ``code_dropout``."""
        code = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        keep = (torch.rand(mu.shape[0], 1, device=mu.device) >= self.config.code_dropout).to(mu.dtype)
        return code * keep

    @staticmethod
    def kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """KL(q || N(0, I)) per window, summed over code dims, averaged over the batch."""
        return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
