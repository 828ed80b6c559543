"""A stand-in decoder with the engine's decoder interface, for tests and benchmarks.

**Decoder interface** (what the engine expects from the avatar package's VAE decoder):

    forward(z: Tensor (B, Z)) -> (texture, weights)
        texture: float in [0, 1], (B, C, H, W) (channels first) or (B, H, W, C), C = 4 (RGBA, straight
                 alpha) or 3 (RGB, opaque: alpha 255 is added)
        weights: (B, K) blendshape weights
    attributes: z_dim: int, texture_size: int (H == W), blendshapes: int
    optional: decode_weights(z) -> (B, K), the weights without the texture (cheaper training losses)

It must be a pure function of z (no state, no randomness in eval mode) built from standard layers,
so the CUDA backend can run it in fp16, capture it in a CUDA graph and batch several avatars'
copies with ``torch.func`` (stacked parameters + vmap).

This reference is *not* a trained model: it has the shape and cost profile a runtime decoder should
have — a static full-resolution base texture (the neutral atlas, a buffer) plus a learned,
low-resolution dynamic residual (convolutions up to H/4, then one bilinear upsample), because
expression changes of a face atlas are spatially smooth except around the mouth and eyes. FACTS.md
measured a plain upsample+conv decoder at 27 ms (256²) on 2 cores; this layout is what fits the
16 ms CPU budget.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class ReferenceDecoder(nn.Module):
    def __init__(self, z_dim: int = 64, texture_size: int = 256, blendshapes: int = 32,
                 seed_res: int = 8, width: int = 64, min_width: int = 16, seed: int = 0):
        super().__init__()
        if texture_size % 4 or texture_size // 4 < seed_res:
            raise ValueError("texture_size must be a multiple of 4 and >= 4 * seed_res")
        self.z_dim, self.texture_size, self.blendshapes = z_dim, texture_size, blendshapes
        gen = torch.Generator().manual_seed(seed)
        self.seed_res, self.width = seed_res, width
        self.fc = nn.Linear(z_dim, width * seed_res * seed_res)
        stages = int(round(math.log2(texture_size // 4 // seed_res)))
        convs, c = [], width
        for _ in range(stages):
            c_out = max(min_width, c // 2)
            convs.append(nn.Conv2d(c, c_out, 3, padding=1))
            c = c_out
        self.convs = nn.ModuleList(convs)
        self.to_rgba = nn.Conv2d(c, 4, 1)
        self.weights_head = nn.Sequential(nn.Linear(z_dim, 128), nn.SiLU(), nn.Linear(128, blendshapes))
        # Neutral atlas: a smooth, face-like random image so outputs are not flat (deterministic).
        base = torch.rand(1, 3, 16, 16, generator=gen)
        base = F.interpolate(base, size=(texture_size, texture_size), mode="bilinear", align_corners=False)
        alpha = torch.ones(1, 1, texture_size, texture_size)
        self.register_buffer("base", torch.cat([base * 0.6 + 0.2, alpha], 1)[0])
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / math.sqrt(max(1, p[0].numel()))))

    def decode_weights(self, z: torch.Tensor) -> torch.Tensor:
        """Blendshape weights alone (optional interface: training's geometry loss skips the texture)."""
        return self.weights_head(z)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = z.shape[0]
        x = F.silu(self.fc(z)).view(b, self.width, self.seed_res, self.seed_res)
        for conv in self.convs:
            x = F.silu(conv(F.interpolate(x, scale_factor=2.0, mode="nearest")))
        delta = torch.tanh(self.to_rgba(x)) * 0.25
        delta = F.interpolate(delta, size=(self.texture_size, self.texture_size), mode="bilinear", align_corners=False)
        texture = (self.base + delta).clamp(0.0, 1.0)
        return texture, self.weights_head(z)
