"""Typed configuration of the animation network, its residual encoder, augmentation and training.

Every field is recorded in the avatar manifest (``AnimationConfig.to_dict``) so a package says
exactly which network it carries; ``from_dict`` rejects unknown keys instead of ignoring them, so a
manifest written by a newer build fails loudly rather than loading a different network.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

Arch = Literal["lstm", "mlp"]


@dataclass(frozen=True)
class ResidualEncoderConfig:
    """Residual expression encoder: target z of the window → a tiny code appended to the features.

    ``code_dim`` is the bottleneck (a few numbers cannot carry a 64-d z, only what the features
    miss); ``code_dropout`` replaces the whole code by its prior for that fraction of training
    windows, so the network must also work from the features alone (which is all it gets at
    inference); ``kl_weight`` pulls the posterior towards the N(0, I) prior whose mean (zeros) is
    the code used at inference.
    """

    enabled: bool = True
    code_dim: int = 4
    hidden: int = 64
    code_dropout: float = 0.5
    kl_weight: float = 0.01


@dataclass(frozen=True)
class AugmentConfig:
    """Cross-driver augmentation, applied to normalised feature windows on the fly.

    Magnitudes are in normalised feature units (≈ 1 = one standard deviation of the target's own
    expression range), so they mean the same for mp478 and deca2048.
    """

    enabled: bool = True
    noise_std: float = 0.05  # per frame, per dim: tracker jitter of another camera/person
    gain_log_std: float = 0.25  # per window, global: a more or less expressive driver
    dim_gain_std: float = 0.15  # per window, per dim: expressions that move points differently
    offset_std: float = 0.15  # per window, per dim: neutral calibration error of the driver
    repeat_prob: float = 0.1  # per step: frame repeated (slower camera / held frame)
    skip_prob: float = 0.15  # per step: frame dropped on the wire (window spans more time)
    input_dropout: float = 0.05  # per element: robustness to single corrupted features
    # per window: the older frames replaced by another window's, the newest 1..splice_keep kept —
    # an expression that changes abruptly. Without it the network leaned on the whole window and
    # followed the other sample person's fast smile onset 2 frames late (quick build; see ANIMATION.md).
    splice_prob: float = 0.3
    splice_keep: int = 3


@dataclass(frozen=True)
class LossConfig:
    z_weight: float = 1.0
    geometry_weight: float = 1.0  # MSE on decoded blendshape weights (needs a decoder)
    geometry_samples: int = 16  # windows per step for it when the decoder has no decode_weights(z)
    texture_weight: float = 0.0  # L1 on decoded textures (needs a decoder; costly on CPU)
    texture_every: int = 8  # texture loss every n-th step ...
    texture_samples: int = 2  # ... on this many windows of the batch


@dataclass(frozen=True)
class AnimationConfig:
    arch: Arch = "lstm"  # "mlp" = per-frame MLP on the last frame only (ablation baseline)
    window: int = 8  # T frames per window; output is z of the last one
    pca_dim: int = 48  # fixed PCA basis of the target's features first (0 = off; see network.py)
    input_proj: int = 96  # features → this width before the recurrence (shared per frame)
    hidden: int = 128  # LSTM width (or MLP hidden width)
    layers: int = 1
    last_frame_skip: bool = True  # head also sees the newest frame directly (no lag; network.py)
    dropout: float = 0.2  # on the projected features and between layers
    normalisation: Literal["zero_centred", "per_dim"] = "zero_centred"
    std_floor: float = 0.5  # per-dim std floored at this fraction of the median std (see normalisation.py)
    residual: ResidualEncoderConfig = field(default_factory=ResidualEncoderConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    # 250, measured on the sample woman (build-avatar --animation-steps 250 / 500 / 1500, same head
    # model): held-out z R² 0.81 / 0.78 / 0.73, and driven by the other sample person (eval transfer)
    # smile r 0.89 / 0.80 / 0.73 with lag -1 / -5 / 8 frames. Longer training fits her own frames
    # closer and transfers worse: with one clip, each expression seen once, it overfits.
    steps: int = 250
    batch: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-3
    seed: int = 0
    # torch intra-op threads during training. 1, measured: on the shared 2-core host 2 threads ran
    # 12× slower (60 steps: 37-40 s vs 3.0-3.3 s) whenever another process was busy (OpenMP barriers).
    threads: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ("lstm", "mlp"):
            raise ValueError(f"arch must be 'lstm' or 'mlp', got {self.arch!r}")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.arch == "mlp" and self.window != 1:
            raise ValueError("arch 'mlp' is per-frame: window must be 1")
        for name in ("input_proj", "hidden", "layers", "steps", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @staticmethod
    def quick(**overrides: Any) -> "AnimationConfig":
        """The `--quick` build: same network shape, far fewer steps (seconds on 2 cores)."""
        base = dict(steps=250, batch=48)
        base.update(overrides)
        return AnimationConfig(**base)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "AnimationConfig":
        d = dict(d)
        subs = {"residual": ResidualEncoderConfig, "augment": AugmentConfig, "loss": LossConfig}
        for key, sub in subs.items():
            if key in d:
                d[key] = _strict(sub, d[key])
        return _strict(cls, d)


def _strict(cls, d: dict):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected an object, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown keys {sorted(unknown)}")
    return cls(**d)
