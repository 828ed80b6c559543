"""The paper's screen-space neural refinement: a small U-Net on the rasterised avatar.

Input: the avatar rasterised in a view (premultiplied colour + alpha) inside a square crop around
the head, resampled to ``size``². Output: corrected premultiplied colour and a matte. It is
trained by the builder on the clip's own frames: the avatar rendered with each training frame's
tracked pose and its VAE-reconstructed texture, against the real frame × its head matte and the
matte itself. What it can add is what the mesh cannot carry: the soft, moving outline of hair,
wisps beyond the shell, colour at the silhouette.

Stereo consistency and no shimmer by construction: the network is a deterministic per-pixel
function of its input (no noise, no temporal state, no dropout at run time), so two eyes that
rasterise the same head see the same correction at corresponding surface points, and a still head
gives a bit-identical output frame after frame. The correction is applied as a *residual*: the
network's output minus its input at ``size``² is upsampled and added to the full-resolution
render, so the face's texture detail passes through untouched.

Runtime paths: ``Refiner`` on the CPU (torch, one thread) and ``CudaRefiner`` (torch CUDA, fp16,
channels-last, the forward captured once in a CUDA graph; written for the GPU render node, not run
here: this machine has no GPU). The render node runs either inside its GL frame
(``xr_runtime/gl/refinement_pass.py``: the avatar drawn alone into a layer, that layer's crop the
network's input, the correction composited with depth).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

REFINE_PREFIX = "refine."


@dataclass(frozen=True)
class RefinementConfig:
    size: int = 128  # network resolution (square crop around the head)
    width: int = 16  # channels of the first level (then 2×, 3×)
    steps: int = 400
    batch: int = 8
    lr: float = 3e-3
    margin: float = 1.12  # crop = the head's projected bounding square × margin
    alpha_weight: float = 2.0

    def to_dict(self) -> dict:
        return asdict(self)


class RefineNet(nn.Module):
    """Three-level U-Net, 4 → 4 channels, zero-initialised output (identity at the start)."""

    def __init__(self, width: int = 16):
        super().__init__()
        w1, w2, w3 = width, 2 * width, 3 * width
        self.enc1 = nn.Sequential(nn.Conv2d(4, w1, 3, padding=1), nn.ReLU(inplace=True))
        self.enc2 = nn.Sequential(nn.Conv2d(w1, w2, 3, stride=2, padding=1), nn.ReLU(inplace=True))
        self.enc3 = nn.Sequential(nn.Conv2d(w2, w3, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(w3, w3, 3, padding=1), nn.ReLU(inplace=True))
        self.dec2 = nn.Sequential(nn.Conv2d(w3 + w2, w2, 3, padding=1), nn.ReLU(inplace=True))
        self.dec1 = nn.Sequential(nn.Conv2d(w2 + w1, w1, 3, padding=1), nn.ReLU(inplace=True))
        self.out = nn.Conv2d(w1, 4, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 4, S, S) premultiplied rgb + alpha in [0, 1] → the same, refined."""
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(torch.cat([F.interpolate(e3, size=e2.shape[-2:], mode="bilinear", align_corners=False), e2], 1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, size=e1.shape[-2:], mode="bilinear", align_corners=False), e1], 1))
        y = x + self.out(d1)
        alpha = y[:, 3:4].clamp(0, 1)
        rgb = torch.minimum(y[:, :3].clamp(0, 1), alpha)  # premultiplied: colour never exceeds coverage
        return torch.cat([rgb, alpha], 1)


def crop_box(alpha: np.ndarray, margin: float) -> tuple[int, int, int] | None:
    """Square (x0, y0, side) around the rendered head (alpha > 0), or None when nothing is drawn."""
    ys, xs = np.nonzero(alpha > 0)
    if len(xs) == 0:
        return None
    # The drawn pixels' outer corners: pixel (x, y) covers [x, x + 1) × [y, y + 1).
    return crop_square(np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]], np.float64), margin)


def crop_square(points_px: np.ndarray, margin: float) -> tuple[int, int, int]:
    """Square (x0, y0, side) around projected mesh points (N, ≥2) in pixels: their bounding
    square × ``margin``. The crop the builder trains on and the render node refines in."""
    lo, hi = np.floor(points_px[:, :2].min(0)), np.ceil(points_px[:, :2].max(0))
    cx, cy = 0.5 * (lo + hi)
    side = int(np.ceil((hi - lo).max() * margin))
    return int(round(cx - side / 2)), int(round(cy - side / 2)), max(side, 8)


def _crop(img: np.ndarray, box: tuple[int, int, int], size: int) -> np.ndarray:
    """Resample the square ``box`` of ``img`` (H, W, C) to size² (zero outside the image)."""
    import cv2

    x0, y0, side = box
    s = size / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
    out = cv2.warpAffine(img.astype(np.float32), m, (size, size), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT)
    return out.reshape(size, size, -1)


def _uncrop(small: np.ndarray, box: tuple[int, int, int], height: int, width: int) -> np.ndarray:
    import cv2

    x0, y0, side = box
    s = small.shape[0] / side
    m = np.array([[s, 0, -x0 * s], [0, s, -y0 * s]], np.float32)
    out = cv2.warpAffine(small.astype(np.float32), m, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                         borderMode=cv2.BORDER_CONSTANT)
    return out.reshape(height, width, -1)


def crop_pair(rgb: np.ndarray, alpha: np.ndarray, box, size: int) -> np.ndarray:
    """(4, size, size) float32 network input of a full-resolution render."""
    x = _crop(np.concatenate([rgb, alpha[..., None]], -1), box, size)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


class Refiner:
    """CPU path: ``refiner(rgb, alpha) -> (rgb, alpha)`` on a full-resolution render (premultiplied)."""

    def __init__(self, net: RefineNet, config: RefinementConfig, threads: int = 1):
        self.net = net.eval()
        self.config = config
        self.threads = threads

    def correction(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            prev = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                t = torch.from_numpy(x)[None]
                return (self.net(t) - t)[0].numpy()
            finally:
                torch.set_num_threads(prev)

    def __call__(self, rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        box = crop_box(alpha, self.config.margin)
        if box is None:
            return rgb, alpha
        h, w = alpha.shape
        delta = _uncrop(self.correction(crop_pair(rgb, alpha, box, self.config.size)).transpose(1, 2, 0), box, h, w)
        a = np.clip(alpha + delta[..., 3], 0, 1)
        c = np.minimum(np.clip(rgb + delta[..., :3], 0, 1), a[..., None])
        return c.astype(np.float32), a.astype(np.float32)


class CudaRefiner:
    """GPU path (the render node with CUDA): the same network in fp16, channels-last, its forward
    captured in a CUDA graph for a fixed batch (both eyes, or eyes × avatars, in one launch).
    Input and output stay on the device: ``refine(x)`` takes (B, 4, S, S) crops already on the GPU
    (rasterised by GL and mapped through CUDA-GL interop) and returns the corrected crops.
    Written for the GPU machines; not run here (no GPU)."""

    def __init__(self, net: RefineNet, config: RefinementConfig, batch: int = 2, device: str = "cuda"):
        if not torch.cuda.is_available():
            raise RuntimeError("CudaRefiner needs a CUDA device")
        self.config = config
        self.net = RefineNet(config.width).to(device).half().to(memory_format=torch.channels_last)
        self.net.load_state_dict({k: v.half() for k, v in net.state_dict().items()})
        self.net.eval()
        s = config.size
        self.static_in = torch.zeros(batch, 4, s, s, device=device, dtype=torch.half).to(
            memory_format=torch.channels_last)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.no_grad(), torch.cuda.stream(stream):
            for _ in range(3):  # warm-up before capture (cuDNN picks its kernels)
                self.net(self.static_in)
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph):
            self.static_out = self.net(self.static_in)

    def refine(self, x: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(x)
        self.graph.replay()
        return self.static_out


def tensors_of(net: RefineNet) -> dict[str, torch.Tensor]:
    return {REFINE_PREFIX + k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}


def refinement_block(config: RefinementConfig, metrics: dict, default_on_cpu: bool) -> dict:
    return {"included": True, "arch": "unet3", "config": config.to_dict(), "metrics": metrics,
            "default": {"cpu": default_on_cpu, "cuda": True},
            # Where it runs: headcast eval appearance (CPU path) and the render node's screen-space
            # pass (xr_runtime/gl/refinement_pass.py: CPU, or CUDA-GL interop), per `default`.
            "runs_in": ["eval appearance", "render node"]}


def check_refinement(block: dict, tensors: dict) -> tuple[RefineNet, RefinementConfig]:
    """The package's refinement network from its manifest block and ``refine.*`` tensors; raises
    ValueError naming what is wrong (missing / unexpected / mis-shaped / non-finite tensors)."""
    cfg_raw = dict(block.get("config", {}))
    known = set(RefinementConfig.__dataclass_fields__)
    cfg = RefinementConfig(**{k: v for k, v in cfg_raw.items() if k in known})
    if not (16 <= cfg.size <= 512 and 4 <= cfg.width <= 64):
        raise ValueError(f"refinement config out of range (size {cfg.size}, width {cfg.width})")
    net = RefineNet(cfg.width)
    want = net.state_dict()
    got = {k[len(REFINE_PREFIX):]: v for k, v in tensors.items() if k.startswith(REFINE_PREFIX)}
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    if missing or extra:
        raise ValueError(f"refinement tensors: missing {missing[:3]}, unexpected {extra[:3]}")
    for k, v in want.items():
        if tuple(got[k].shape) != tuple(v.shape):
            raise ValueError(f"refinement tensor {k} has shape {tuple(got[k].shape)}, needs {tuple(v.shape)}")
        if not torch.isfinite(got[k]).all():
            raise ValueError(f"refinement tensor {k} holds non-finite values")
    net.load_state_dict({k: v.float() for k, v in got.items()})
    return net.eval(), cfg


def refinement_from_package(pkg) -> Refiner | None:
    """The CPU refiner of a loaded package (``AvatarPackage.refinement``), or None without one."""
    r = getattr(pkg, "refinement", None)
    if r is None:
        return None
    net, cfg = r
    return Refiner(net, cfg)


def train_refinement(inputs: np.ndarray, targets: np.ndarray, config: RefinementConfig, seed: int = 0,
                     log=None) -> tuple[RefineNet, dict]:
    """inputs / targets: (N, 4, S, S) float32 crops (render; real × matte + matte). L1 on the
    premultiplied colour and ``alpha_weight`` × L1 on the matte."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = RefineNet(config.width)
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    x_all, y_all = torch.from_numpy(inputs), torch.from_numpy(targets)
    n = len(x_all)
    w = torch.tensor([1.0, 1.0, 1.0, config.alpha_weight]).view(1, 4, 1, 1)
    before = float(((x_all - y_all).abs() * w).mean())
    loss = torch.tensor(before)
    for step in range(config.steps):
        idx = torch.randint(0, n, (min(config.batch, n),), generator=g)
        x, y = x_all[idx], y_all[idx]
        if torch.rand((), generator=g) < 0.5:  # mirror: the head is roughly symmetric, the net should be too
            x, y = x.flip(-1), y.flip(-1)
        loss = ((net(x) - y).abs() * w).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log is not None and step % 100 == 0:
            log(step, float(loss))
    net.eval()
    with torch.no_grad():
        after = float(np.mean([float(((net(x_all[i:i + 16]) - y_all[i:i + 16]).abs() * w).mean())
                               for i in range(0, n, 16)]))
    return net, {"train_l1_before": round(before, 5), "train_l1_after": round(after, 5), "steps": config.steps,
                 "parameters": int(sum(p.numel() for p in net.parameters()))}
