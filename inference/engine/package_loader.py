"""A loaded avatar package → what the engine runs (:class:`AvatarModel`) and the face it idles at.

Load a package once (``AvatarPackage.load``: reads, hashes and validates every file) and hand the
loaded package to both functions here: the render node needs the mesh, the engine model and the
idle face of one slot, and each used to load (and hash) the package again.

The decoder is the package's VAE decoder (``inference/head_model/vae.py`` ``Decoder``: z → (texture
(B, 3, S, S), weights (B, K)), the engine's decoder interface; a whole head's package wraps it in
``AlphaDecoder``, whose texture has a fourth channel, the learned alpha). The animation network comes from
the package's ``animation`` manifest block and its ``anim.*`` tensors in weights.safetensors
(inference/animation/serialize.py). A package built before the animation step existed has neither;
``allow_untrained`` then substitutes an untrained network of the default shape (benchmarks only).

**The idle face** (``idle_z``, ``idle_face``) is what an avatar shows when nobody drives it: before
its stream's first frame, after the stream is lost, and wherever no engine runs. It is the decoded
``neutral_z`` of the package's animation network: the network's own output for a driver at rest
(features = 0, which is what a relaxed driver's features are after neutral subtraction), set at
training time. The engine fades to exactly that latent (engine/state.py), so the idle face is the
same whether the engine runs or not. z = 0 (the VAE prior's mean, an average face of the clip) is
used only when the package has no animation network, and so no notion of "at rest".
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from .model import AvatarModel

if TYPE_CHECKING:
    from inference.avatar_package import AvatarPackage

PACKAGE_NETWORK = "package animation network"


def avatar_model_from_package(package: "AvatarPackage") -> AvatarModel:
    """The engine's model of an already loaded package (no second read or hash). Raises
    ValueError naming the package when it carries no animation network."""
    if package.animation is None:
        raise ValueError(f"{package.path}: the package carries no animation network (built before that step?)")
    net, norm = package.animation  # validated by the package loader against the manifest's block
    return AvatarModel(net, norm, package.engine_decoder.eval(), name=package.manifest.name,
                       feature_kind=package.manifest.feature_kind, kind_maps=dict(package.kind_maps))


def load_avatar_model(path: str | Path, allow_untrained: bool = False, seed: int = 0) -> tuple[AvatarModel, str]:
    """(model, note) of the package at ``path``, for callers that need nothing else from it; the
    note says where the animation network came from."""
    from inference.avatar_package import AvatarPackage

    package = AvatarPackage.load(Path(path))
    if package.animation is not None or not allow_untrained:
        return avatar_model_from_package(package), PACKAGE_NETWORK
    from .reference_avatar import reference_avatar

    feature_dim = 1434 if package.manifest.feature_kind == "mp478" else 2048
    model = reference_avatar(feature_dim=feature_dim, z_dim=package.manifest.z_dim, seed=seed,
                             decoder=package.engine_decoder.eval())
    return model, "package decoder; no animation network in the package: untrained stand-in of default shape"


def idle_z(package: "AvatarPackage") -> torch.Tensor:
    """(Z,) float32: the animation network's ``neutral_z``, or zeros without a network (module docstring)."""
    if package.animation is not None:
        return package.animation[0].neutral_z.detach().float().cpu().clone()
    return torch.zeros(package.manifest.z_dim)


def idle_face(package: "AvatarPackage") -> tuple[np.ndarray, np.ndarray]:
    """(texture (S, S, 4) uint8 RGBA, blendshape weights (K,) float32) of the idle face."""
    with torch.inference_mode():
        texture, weights = package.decoder(idle_z(package))
    return texture.cpu().numpy(), weights.cpu().numpy().astype(np.float32)
