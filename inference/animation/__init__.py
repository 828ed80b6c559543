"""Animation network (LSTM over feature windows → target latent z), residual expression encoder, training.

The avatar builder's entry points:

    from inference.animation import AnimationConfig, train_animation, animation_tensors, animation_manifest
    net, norm, metrics = train_animation(features, z, valid, AnimationConfig(), holdout=..., decoder=...)
    tensors = animation_tensors(net, norm)                 # "anim.*" → weights.safetensors
    block = animation_manifest(net, norm, "mp478", metrics) # → avatar.json "animation"
    net, norm = load_animation(tensors, block)             # strict, names what is wrong
"""
from .config import AnimationConfig, AugmentConfig, LossConfig, ResidualEncoderConfig
from .network import AnimationNet
from .normalisation import FeatureNormalisation
from .serialize import animation_manifest, animation_tensors, load_animation
from .train import train_animation

__all__ = ["AnimationConfig", "AugmentConfig", "LossConfig", "ResidualEncoderConfig", "AnimationNet",
           "FeatureNormalisation", "animation_manifest", "animation_tensors", "load_animation", "train_animation"]
