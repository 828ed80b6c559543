"""Feature kind ``deca2048``: the pooled ResNet50 features of DECA's FLAME encoder (the paper's).

The network is written out here in plain torch (no torchvision) with module names that match
DECA's ``E_flame`` state dict exactly (``decalib/models/encoders.py`` ResnetEncoder:
``encoder.*`` = a ResNet50 without fc, ``layers.*`` = the 2048→1024→236 regressor), so a user's
``deca_model.tar`` loads without renaming. DECA's own loader silently skips keys it does not find;
here any missing or unexpected key refuses the checkpoint, naming the keys.

Input: a 224×224 RGB crop in [0, 1] (no mean/std normalisation), square, centred on the landmark
box and 1.25× its larger side. Output: 2048 non-negative values (average of post-ReLU activations).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from core.errors import HeadcastError

log = logging.getLogger(__name__)

CROP_SIZE = 224
CROP_SCALE = 1.25
FEATURE_DIM = 2048
FLAME_PARAMS = 236  # shape 100 + tex 50 + exp 50 + pose 6 + cam 3 + light 27
CHECKPOINT_KEY = "E_flame"


class DecaCheckpointError(HeadcastError, ValueError):
    """The checkpoint is missing, unreadable, or its E_flame does not match DECA's layout."""


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        # DECA (like torchvision ≥ 0.2's ResNet v1.5) puts the stride on the 3×3 convolution.
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


class ResNet50Features(nn.Module):
    """ResNet50 trunk + 7×7 average pool, no fc: (B, 3, 224, 224) → (B, 2048)."""

    def __init__(self):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(64, 3)
        self.layer2 = self._make_layer(128, 4, stride=2)
        self.layer3 = self._make_layer(256, 6, stride=2)
        self.layer4 = self._make_layer(512, 3, stride=2)
        self.avgpool = nn.AvgPool2d(7, stride=1)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * Bottleneck.expansion, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layers = [Bottleneck(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * Bottleneck.expansion
        layers += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1)


class DecaFlameEncoder(nn.Module):
    """DECA's ``E_flame`` (ResnetEncoder): ``encoder`` gives the features, ``layers`` FLAME params."""

    def __init__(self, outsize: int = FLAME_PARAMS):
        super().__init__()
        self.encoder = ResNet50Features()
        self.layers = nn.Sequential(nn.Linear(FEATURE_DIM, 1024), nn.ReLU(), nn.Linear(1024, outsize))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(self.encoder(x))


def _is_optional(key: str) -> bool:
    # BatchNorm's step counter is absent from checkpoints saved by torch < 0.4.1; it affects nothing
    # in eval mode, so its presence or absence is not a layout mismatch.
    return key.endswith("num_batches_tracked")


def _summarise(keys: list[str], limit: int = 8) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def load_flame_encoder(checkpoint: Path) -> DecaFlameEncoder:
    """Loads ``E_flame`` from a ``deca_model.tar``; refuses anything that does not match exactly."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise DecaCheckpointError(
            f"DECA checkpoint {checkpoint} does not exist (DECA's weights are non-commercial: "
            "get deca_model.tar from the DECA project yourself)"
        )
    try:
        data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DecaCheckpointError(f"{checkpoint} is not a loadable torch checkpoint: {type(exc).__name__}: {exc}") from exc
    if not isinstance(data, dict) or CHECKPOINT_KEY not in data:
        found = _summarise([str(k) for k in data]) if isinstance(data, dict) else type(data).__name__
        raise DecaCheckpointError(f"{checkpoint} has no '{CHECKPOINT_KEY}' state dict (found: {found})")
    sd = data[CHECKPOINT_KEY]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise DecaCheckpointError(f"{checkpoint}: '{CHECKPOINT_KEY}' is not a state dict of tensors")
    # Built on the meta device: names and shapes without spending ~0.5 s on a random init that the
    # checkpoint would overwrite anyway.
    with torch.device("meta"):
        model = DecaFlameEncoder()
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd and not _is_optional(k)]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_summarise(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_summarise(unexpected)}")
        raise DecaCheckpointError(f"{checkpoint}: {CHECKPOINT_KEY} does not match DECA's ResnetEncoder; " + "; ".join(parts))
    bad_shapes = [f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                  if k in sd and sd[k].shape != v.shape]
    if bad_shapes:
        raise DecaCheckpointError(f"{checkpoint}: wrong tensor shapes: {_summarise(bad_shapes)}")
    nonfinite = [k for k, v in sd.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if nonfinite:
        raise DecaCheckpointError(f"{checkpoint}: non-finite values in {_summarise(nonfinite)}")
    full = {k: (sd[k] if k in sd else torch.zeros((), dtype=v.dtype)) for k, v in expected.items()}
    full = {k: v.to(expected[k].dtype).contiguous() for k, v in full.items()}
    model.load_state_dict(full, strict=True, assign=True)
    return model.eval()


def crop_box(landmarks_px: np.ndarray, scale: float = CROP_SCALE) -> tuple[float, float, float]:
    """Square crop (centre x, centre y, side) around the landmark box, enlarged by ``scale``."""
    xy = np.asarray(landmarks_px, dtype=np.float64)[:, :2]
    x0, y0 = xy.min(0)
    x1, y1 = xy.max(0)
    side = max(x1 - x0, y1 - y0) * scale
    if not np.isfinite(side) or side < 2:
        raise ValueError("degenerate landmark box")
    return (x0 + x1) / 2, (y0 + y1) / 2, side


def crop_face(bgr: np.ndarray, landmarks_px: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """(size, size, 3) float32 RGB in [0, 1]; areas outside the image are black."""
    cx, cy, side = crop_box(landmarks_px)
    s = size / side
    m = np.array([[s, 0, size / 2 - s * cx], [0, s, size / 2 - s * cy]], dtype=np.float64)
    crop = cv2.warpAffine(bgr, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return crop[:, :, ::-1].astype(np.float32) / 255.0


@dataclass(frozen=True)
class DecaConfig:
    checkpoint: Path
    threads: int | None = None  # torch intra-op threads; None leaves torch's default


class DecaExtractor:
    def __init__(self, config: DecaConfig):
        self.config = config
        self.model = load_flame_encoder(config.checkpoint)
        if config.threads:
            torch.set_num_threads(config.threads)

    @torch.inference_mode()
    def features_from_crops(self, crops: np.ndarray) -> np.ndarray:
        """(B, 224, 224, 3) RGB [0, 1] → (B, 2048) float32."""
        x = torch.from_numpy(np.ascontiguousarray(crops)).permute(0, 3, 1, 2).float()
        return self.model.encoder(x).numpy().astype(np.float32)

    def extract(self, bgr: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray:
        """Features of one frame as the wire shape (2048, 1)."""
        crop = crop_face(bgr, landmarks_px)
        return self.features_from_crops(crop[None])[0].reshape(FEATURE_DIM, 1)


def write_random_checkpoint(path: Path, seed: int = 0) -> Path:
    """A randomly initialised ``deca_model.tar`` in DECA's layout, for tests and demos without
    DECA's (non-commercial) weights. ``E_detail`` and ``D_detail`` are stand-ins of the right names."""
    torch.manual_seed(seed)
    e_flame = DecaFlameEncoder().eval()
    # Randomise BatchNorm statistics too, so a loader that ignored them would give other outputs.
    for m in e_flame.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    e_detail = nn.Sequential(nn.Linear(8, 128))
    d_detail = nn.Sequential(nn.Linear(128, 8))
    torch.save({"E_flame": e_flame.state_dict(), "E_detail": e_detail.state_dict(), "D_detail": d_detail.state_dict()},
               path)
    return Path(path)
