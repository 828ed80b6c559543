"""An untrained avatar with the real shapes: for engine tests and benchmarks, never for display.

Timing does not depend on trained weights, so benchmarks without an avatar package use this: an
animation network of the default configuration (random weights, a non-zero head so outputs vary
with the input) and the reference decoder at the requested texture size.
"""
from __future__ import annotations

import numpy as np
import torch

from inference.animation.config import AnimationConfig
from inference.animation.network import AnimationNet
from inference.animation.normalisation import FeatureNormalisation

from .model import AvatarModel
from .reference_decoder import ReferenceDecoder


def reference_avatar(texture_size: int = 256, feature_dim: int = 1434, z_dim: int = 64, blendshapes: int = 32,
                     config: AnimationConfig = AnimationConfig(), seed: int = 0,
                     decoder: torch.nn.Module | None = None) -> AvatarModel:
    gen = torch.Generator().manual_seed(seed)
    net = AnimationNet(feature_dim, z_dim, config)
    with torch.no_grad():
        for name, p in net.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 / np.sqrt(max(1, p.shape[-1]))))
        if net.pca_dim:
            q, _ = torch.linalg.qr(torch.randn(feature_dim, net.pca_dim, generator=gen, dtype=torch.float64))
            net.pca.copy_(q.float() * 4.0)
        net.z_scale.fill_(0.5)
        net.neutral_z.copy_(net(torch.zeros(1, config.window, feature_dim))[0])
    net.eval()
    rng = np.random.default_rng(seed)
    norm = FeatureNormalisation(np.zeros(feature_dim, np.float32),
                                (0.2 + 0.1 * rng.random(feature_dim)).astype(np.float32), "zero_centred")
    if decoder is None:
        decoder = ReferenceDecoder(z_dim, texture_size, blendshapes, seed=seed)
    return AvatarModel(net, norm, decoder.eval(), name=f"reference-{seed}")
