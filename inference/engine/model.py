"""One avatar's networks as the engine runs them: folded, explicit, batchable over avatars.

Training keeps the animation network readable (normalise → PCA → projection → nn.LSTM → head);
inference wants the fewest kernels. Folding turns the three input stages into one affine map
D → P (they are all linear), drops the residual-code input columns (the code is the prior, zeros,
at inference) and folds ``z_mean``/``z_scale`` into the head. The LSTM is then written out with
batched matrix products over a leading *avatar* dimension, so several avatars with different
weights run as one set of kernels (and one CUDA graph): parameters are stacked (B, …) tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from inference.animation.network import AnimationNet
from inference.animation.normalisation import FeatureNormalisation


@dataclass
class AvatarModel:
    """An avatar as the engine needs it. ``decoder`` follows reference_decoder's interface."""

    net: AnimationNet
    norm: FeatureNormalisation
    decoder: nn.Module
    name: str = "avatar"
    # The network's own feature kind and maps from other kinds into it (inference/animation/kind_map.py):
    # {FeatureKind: KindMap}. The engine converts each incoming frame by its kind (state.py).
    feature_kind: str | None = None  # None: any frame of the network's input size
    kind_maps: dict = field(default_factory=dict)

    @property
    def window(self) -> int:
        return self.net.window

    @property
    def feature_dim(self) -> int:
        return self.net.feature_dim


@torch.no_grad()
def fold_animation(net: AnimationNet, norm: FeatureNormalisation) -> dict[str, torch.Tensor]:
    """Plain fp32 tensors (no batch dim) equivalent to ``net.eval()`` on raw features with the prior code."""
    std = torch.from_numpy(norm.std).double()
    mean = torch.from_numpy(norm.mean).double()
    basis = net.pca.double() if net.pca_dim else torch.eye(net.feature_dim, dtype=torch.float64)
    wp = net.proj.weight.double()  # (P, k)
    in_w = (basis / std[:, None]) @ wp.T  # (D, P)
    in_b = net.proj.bias.double() - (mean / std) @ basis @ wp.T
    out = {"in_w": in_w.float(), "in_b": in_b.float()}
    p_width = net.config.input_proj
    if net.config.arch == "lstm":
        for l in range(net.config.layers):
            w_ih = getattr(net.rnn, f"weight_ih_l{l}")
            if l == 0:
                w_ih = w_ih[:, :p_width]  # code columns see zeros at inference
            out[f"w_ih{l}"] = w_ih.T.contiguous().float()  # (in, 4H)
            out[f"w_hh{l}"] = getattr(net.rnn, f"weight_hh_l{l}").T.contiguous().float()  # (H, 4H)
            out[f"b{l}"] = (getattr(net.rnn, f"bias_ih_l{l}") + getattr(net.rnn, f"bias_hh_l{l}")).float()
    else:
        linears = [m for m in net.mlp if isinstance(m, nn.Linear)]
        for l, lin in enumerate(linears):
            w = lin.weight[:, :p_width] if l == 0 else lin.weight
            out[f"mlp_w{l}"] = w.T.contiguous().float()
            out[f"mlp_b{l}"] = lin.bias.float()
    scale = net.z_scale.double()
    head_w = net.head.weight.double() * scale
    h_width = net.config.hidden
    if net.config.arch == "lstm" and net.config.last_frame_skip:
        out["head_w_skip"] = head_w[:, h_width:].T.contiguous().float()  # (P, Z)
        head_w = head_w[:, :h_width]
    out["head_w"] = head_w.T.contiguous().float()  # (H, Z)
    out["head_b"] = (net.z_mean.double() + scale * net.head.bias.double()).float()
    out["neutral_z"] = net.neutral_z.float().clone()
    return out


def stack_folded(folded: list[dict[str, torch.Tensor]], device=None, dtype=None) -> dict[str, torch.Tensor]:
    keys = folded[0].keys()
    for f in folded[1:]:
        if f.keys() != keys or any(f[k].shape != folded[0][k].shape for k in keys):
            raise ValueError("avatars batched together need animation networks of identical shape")
    return {k: torch.stack([f[k] for f in folded]).to(device=device, dtype=dtype).contiguous() for k in keys}


def animate(params: dict[str, torch.Tensor], x: torch.Tensor, arch: str, layers: int) -> torch.Tensor:
    """x: (B, T, D) raw features, oldest first; params stacked (B, …) → ẑ (B, Z) for the last frame."""
    p = F.silu(torch.baddbmm(params["in_b"][:, None, :], x, params["in_w"]))  # (B, T, P)
    p_in = p
    if arch == "lstm":
        t_len = p.shape[1]
        h = None
        for l in range(layers):
            gates_in = torch.baddbmm(params[f"b{l}"][:, None, :], p, params[f"w_ih{l}"])  # (B, T, 4H)
            w_hh = params[f"w_hh{l}"]
            c = None
            outs = []
            for t in range(t_len):
                g = gates_in[:, t:t + 1]
                if h is not None and t > 0:
                    g = g + torch.bmm(h, w_hh)
                i, f, gg, o = g.chunk(4, dim=-1)
                i, f, o, gg = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o), torch.tanh(gg)
                c = i * gg if c is None else f * c + i * gg
                h = o * torch.tanh(c)
                outs.append(h)
            p = torch.cat(outs, dim=1) if l + 1 < layers else p
            if l + 1 < layers:
                h = None  # next layer starts from zero state
        last = h  # (B, 1, H)
        if "head_w_skip" in params:  # newest frame's projected features straight to the head
            return torch.baddbmm(torch.baddbmm(params["head_b"][:, None, :], last, params["head_w"]),
                                 p_in[:, -1:], params["head_w_skip"])[:, 0]
    else:
        last = p[:, -1:]
        l = 0
        while f"mlp_w{l}" in params:
            last = F.silu(torch.baddbmm(params[f"mlp_b{l}"][:, None, :], last, params[f"mlp_w{l}"]))
            l += 1
    return torch.baddbmm(params["head_b"][:, None, :], last, params["head_w"])[:, 0]


def to_rgba8(texture: torch.Tensor) -> torch.Tensor:
    """Decoder texture float [0, 1] → (B, H, W, 4) uint8, rounded.

    Accepts channels-first (B, C, H, W) or channels-last (B, H, W, C) with C = 4 (RGBA) or 3 (RGB,
    then alpha = 255: the head model's atlas is opaque)."""
    if texture.dim() != 4:
        raise ValueError(f"decoder texture must be 4-D, got {tuple(texture.shape)}")
    if texture.shape[1] in (3, 4) and texture.shape[-1] not in (3, 4):
        texture = texture.permute(0, 2, 3, 1)
    c = texture.shape[-1]
    if c not in (3, 4):
        raise ValueError(f"decoder texture must have 3 or 4 channels, got shape {tuple(texture.shape)}")
    rgba8 = texture.mul(255.0).add_(0.5).clamp_(0.0, 255.0).to(torch.uint8)
    if c == 3:
        alpha = torch.full(rgba8.shape[:-1] + (1,), 255, dtype=torch.uint8, device=rgba8.device)
        rgba8 = torch.cat([rgba8, alpha], dim=-1)
    return rgba8
