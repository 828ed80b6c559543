"""The whole head's learned alpha: a soft outline for the hair, learned from the clip's head mattes.

The head shell is carved from the mattes by a median quorum (head_shell.py), so its outline is
where about half of the frames say "person": a hard, slightly wrong edge — too wide where the hair
is thin or moves, a cookie-cutter line where the real outline is strands and wisps. The mattes say
more than the quorum kept: at every training frame, each texel of the shell that the camera sees
lands on a pixel whose matte value says how much of the person is there.

**A view-dependent model, because the camera saw the outline edge-on.** A texel on the side of the
hair is on the outline when the camera faces the person; seen face-on from the side (a headset can
walk round the avatar) the same texel is the middle of the hair, opaque. So what is learned is the
texel's transparency *when seen edge-on*, ``b`` = 1 − alpha, and a renderer applies it in
proportion to how edge-on the surface is at that pixel:

    alpha = 1 − b · fade(|cos|),   fade = 1 − smoothstep(EDGE_COS[0], EDGE_COS[1], |cos|)

with ``cos`` the cosine between the surface normal and the direction to the viewer. Learning is a
per-texel least-squares fit of that model to the matte values over the frames that saw the texel
(facing above ``min_cos``, nearest at its pixel, above the chin line): ``b = Σ f·(1 − m) / Σ f²``,
clipped to [0, 1]. A texel the matte always includes gets b = 0; one on the shell's overshoot,
which the matte never includes, b → 1; the moving outline of hair, what share of frames it was
out. The tracked face stays opaque (its texels are the person by construction), as does every
texel seen edge-on in too few frames (the back, the neck below the chin line: nothing says
otherwise). A small blur within the atlas' covered texels smooths single-texel noise.

It is static (hair mostly is): at run time it becomes the decoder texture's A channel
(``AlphaDecoder``), so the GL renderer (and with it recordings and the web view), the software
renderer (``render.render_in_view``: ``eval appearance``, the turntable) all read it from the
texture, and geometry/edge_alpha.py applies it. mesh.glb carries it in its base-colour texture
(alphaMode BLEND; glTF has no view-dependent alpha, so there it is the edge-on value everywhere,
noted in docs/AVATAR.md). preview.png is drawn from the opaque neutral texture and does not show it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from geometry.edge_alpha import edge_fade

ALPHA_PREFIX = "alpha."  # the package's tensor prefix (avatar_package.ALPHA_PREFIX says the same)
ALPHA_TENSOR = ALPHA_PREFIX + "atlas"  # (S, S) uint8: 255 × alpha seen edge-on (1 − b)
@dataclass(frozen=True)
class AlphaConfig:
    enabled: bool = True
    min_cos: float = 0.02  # texels seen this face-on or more count (the outline is seen edge-on)
    min_weight: float = 2.0  # Σ fade² a texel needs (≈ frames seen fully edge-on); fewer: opaque
    blur_texels: float = 0.8  # Gaussian sigma of the smoothing within covered texels (0: none)

    def to_dict(self) -> dict:
        return asdict(self)


class AlphaAccumulator:
    """Per-texel sums of the least-squares fit ``b = Σ f·(1 − m) / Σ f²`` (module docstring)."""

    def __init__(self, size: int):
        self.size = size
        self.num = np.zeros(size * size, np.float64)
        self.den = np.zeros(size * size, np.float64)
        self.frames = 0

    def add(self, texels: np.ndarray, cos: np.ndarray, matte: np.ndarray) -> None:
        """``texels`` (N,) flat atlas indices seen in one frame, their facing ``cos`` and the matte
        value in [0, 1] at their pixels."""
        f = edge_fade(cos)
        np.add.at(self.num, texels, f * (1.0 - np.asarray(matte, np.float64)))
        np.add.at(self.den, texels, f * f)
        self.frames += 1

    def atlas(self, covered: np.ndarray, opaque: np.ndarray, config: AlphaConfig) -> np.ndarray:
        """(S, S) uint8 edge-on alpha: ``opaque`` texels (the face) 255, under-observed texels 255,
        uncovered texels extended from their neighbours (bilinear sampling at island borders)."""
        import cv2

        s = self.size
        enough = (self.den >= config.min_weight).reshape(s, s) & covered & ~opaque
        b = np.where(enough, np.clip(self.num.reshape(s, s) / np.maximum(self.den.reshape(s, s), 1e-9), 0, 1), 0.0)
        if config.blur_texels > 0:
            mask = covered.astype(np.float64)
            k = int(np.ceil(3 * config.blur_texels)) * 2 + 1
            num = cv2.GaussianBlur(b * mask, (k, k), config.blur_texels)
            den = cv2.GaussianBlur(mask, (k, k), config.blur_texels)
            b = np.where(covered & ~opaque, num / np.maximum(den, 1e-9), 0.0)
        alpha = 1.0 - b
        from inference.head_model.texture_unwrap import push_pull_fill

        alpha = push_pull_fill(np.repeat(alpha[..., None], 3, -1), covered)[..., 0]  # (cv2 drops a lone channel)
        return (np.clip(alpha, 0, 1) * 255 + 0.5).astype(np.uint8)


def alpha_stats(atlas: np.ndarray, covered: np.ndarray, opaque: np.ndarray) -> dict:
    """What the manifest records: the shell's texels that are soft (edge-on alpha 0.05–0.95) and
    clear (< 0.05), as shares of the covered texels outside the face."""
    a = atlas.astype(np.float32) / 255.0
    shell = covered & ~opaque
    n = max(int(shell.sum()), 1)
    return {"soft_share_of_shell": round(float(((a > 0.05) & (a < 0.95) & shell).sum() / n), 4),
            "clear_share_of_shell": round(float(((a <= 0.05) & shell).sum() / n), 4),
            "mean_alpha_of_shell": round(float(a[shell].mean()) if shell.any() else 1.0, 4)}


class AlphaDecoder(nn.Module):
    """A head-model decoder whose texture carries the learned alpha as a fourth channel:
    z → ((B, 4, S, S) in [0, 1], weights). The alpha is a buffer, so it moves with ``.to()`` and
    is stacked like any other tensor when the CUDA engine batches different avatars."""

    def __init__(self, decoder: nn.Module, atlas: np.ndarray | torch.Tensor):
        super().__init__()
        self.decoder = decoder
        alpha = torch.as_tensor(np.asarray(atlas, np.uint8)).float().div(255.0)
        self.register_buffer("alpha", alpha[None, None].contiguous())

    @property
    def cfg(self):
        """The wrapped decoder's VaeConfig (texture size, z, weights)."""
        return self.decoder.cfg

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tex, w = self.decoder(z)
        a = self.alpha.to(tex.dtype).expand(tex.shape[0], 1, -1, -1)
        return torch.cat([tex, a], 1), w


def check_alpha(block: dict, tensors: dict, texture_size: int) -> np.ndarray:
    """The manifest's ``alpha`` block and the package's tensors → the (S, S) uint8 atlas; raises
    ValueError naming what is wrong."""
    if block.get("tensor") != ALPHA_TENSOR:
        raise ValueError(f"alpha.tensor must be {ALPHA_TENSOR!r}")
    if ALPHA_TENSOR not in tensors:
        raise ValueError(f"tensor {ALPHA_TENSOR} is missing")
    t = tensors[ALPHA_TENSOR]
    if tuple(t.shape) != (texture_size, texture_size) or t.dtype != torch.uint8:
        raise ValueError(f"{ALPHA_TENSOR}: {tuple(t.shape)} {t.dtype}, expected ({texture_size}, {texture_size}) uint8")
    return t.numpy().copy()
