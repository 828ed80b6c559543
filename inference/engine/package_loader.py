"""Avatar package directory → :class:`AvatarModel` for the engine.

The decoder is the package's VAE decoder (``inference/head_model/vae.py`` ``Decoder``: z → (texture
(B, 3, S, S), weights (B, K)), the engine's decoder interface). The animation network comes from
the package's ``animation`` manifest block and its ``anim.*`` tensors in weights.safetensors
(inference/animation/serialize.py). A package built before the animation step existed has neither;
``allow_untrained`` then substitutes an untrained network of the default shape (benchmarks only).
"""
from __future__ import annotations

from pathlib import Path

from .model import AvatarModel


def avatar_model_from_package(pkg) -> AvatarModel:
    """The engine's model of an already loaded `AvatarPackage` (no second read or hash).
    Raises ValueError naming the package when it carries no animation network."""
    if pkg.animation is None:
        raise ValueError(f"{pkg.path}: the package carries no animation network (built before that step?)")
    net, norm = pkg.animation  # validated by the package loader against the manifest's block
    return AvatarModel(net, norm, pkg.vae.decoder.eval(), name=pkg.manifest.name)


def load_avatar_model(path: str | Path, allow_untrained: bool = False, seed: int = 0) -> tuple[AvatarModel, str]:
    """Returns (model, note): the note says where the animation network came from."""
    from inference.avatar_package import AvatarPackage

    path = Path(path)
    pkg = AvatarPackage.load(path)
    decoder = pkg.vae.decoder.eval()
    if pkg.animation is not None:
        return avatar_model_from_package(pkg), "package animation network"
    if not allow_untrained:
        raise ValueError(f"{path}: the package carries no animation network (built before that step?)")
    from .reference_avatar import reference_avatar

    feature_dim = 1434 if pkg.manifest.feature_kind == "mp478" else 2048
    model = reference_avatar(feature_dim=feature_dim, z_dim=pkg.manifest.z_dim, seed=seed, decoder=decoder)
    return model, "package decoder; no animation network in the package: untrained stand-in of default shape"
