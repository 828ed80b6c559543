"""Animation network ⇄ avatar package: tensors for weights.safetensors, a JSON block for avatar.json.

The package writer owns the files; this module only turns the trained network into
``{prefix + name: tensor}`` (merged into the package's one safetensors file) and a JSON-able dict,
and back. The residual encoder is *not* stored: inference only ever uses its prior (zeros), and
its configuration is recorded so the manifest still says how the network was trained.

Loading is strict: a missing, extra or mis-shaped tensor, or a config this build does not know,
raises ``ValueError`` naming it.
"""
from __future__ import annotations

from typing import Mapping

import torch

from .config import AnimationConfig
from .network import AnimationNet
from .normalisation import FeatureNormalisation

FORMAT = 1
PREFIX = "anim."
# The target's relaxed face (478, 3) canonical: the origin of its training features. Optional (older
# packages lack it); with it, self-reenactment drives the avatar with features measured exactly as
# in training (eval transfer --holdout).
TARGET_NEUTRAL = PREFIX + "target_neutral"
TARGET_NEUTRAL_SHAPE = (478, 3)


def animation_tensors(net: AnimationNet, norm: FeatureNormalisation, prefix: str = PREFIX,
                      target_neutral=None) -> dict[str, torch.Tensor]:
    out = {prefix + "net." + k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    out.update(norm.state_dict(prefix + "norm."))
    if target_neutral is not None:
        out[prefix + "target_neutral"] = torch.as_tensor(target_neutral, dtype=torch.float32).contiguous().clone()
    return out


def animation_manifest(net: AnimationNet, norm: FeatureNormalisation, feature_kind: str,
                       metrics: dict | None = None) -> dict:
    """The ``animation`` block of avatar.json."""
    return {
        "format": FORMAT,
        "feature_kind": feature_kind,
        "feature_dim": net.feature_dim,
        "z_dim": net.z_dim,
        "window": net.window,
        "config": net.config.to_dict(),
        "normalisation": norm.config_dict(),
        "parameters": net.parameter_count(),
        "metrics": metrics or {},
    }


def load_animation(tensors: Mapping[str, torch.Tensor], manifest: dict,
                   prefix: str = PREFIX) -> tuple[AnimationNet, FeatureNormalisation]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"animation block: unsupported format {manifest.get('format') if isinstance(manifest, dict) else manifest!r}")
    try:
        config = AnimationConfig.from_dict(manifest["config"])
        feature_dim, z_dim = int(manifest["feature_dim"]), int(manifest["z_dim"])
        norm_cfg = manifest["normalisation"]
    except KeyError as exc:
        raise ValueError(f"animation block: missing {exc.args[0]!r}") from None
    net = AnimationNet(feature_dim, z_dim, config)
    want = net.state_dict()
    have = {k[len(prefix) + 4:]: v for k, v in tensors.items() if k.startswith(prefix + "net.")}
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if missing or extra:
        raise ValueError(f"animation weights: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in want.items():
        if tuple(have[k].shape) != tuple(v.shape):
            raise ValueError(f"animation weight {prefix}net.{k}: shape {tuple(have[k].shape)}, expected {tuple(v.shape)}")
        if not torch.isfinite(have[k]).all():
            raise ValueError(f"animation weight {prefix}net.{k} holds non-finite values")
    net.load_state_dict({k: v.float() for k, v in have.items()}, strict=True)
    net.eval()
    norm = FeatureNormalisation.from_state_dict(tensors, norm_cfg, prefix + "norm.")
    if norm.dim != feature_dim:
        raise ValueError(f"normalisation dim {norm.dim} != feature_dim {feature_dim}")
    return net, norm
