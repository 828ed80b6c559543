"""CUDA backend: fp16, static buffers, one CUDA graph per batch of avatars, RGBA8 on the device.

Per group of avatars whose networks have the same shapes (normally all of them):

* parameters of the folded animation networks are stacked (B, …) in fp16; decoders are fp16
  copies (the caller's modules are never modified). If every slot shares one decoder object it is
  called once on the batch; otherwise the copies' parameters are stacked and run through
  ``torch.func.vmap(functional_call)`` — several different avatars in one set of kernels.
* every input and output lives in a preallocated static buffer; one step is: copy the windows
  (pinned host → device), replay the graph (animation window + presence fade + decoder + RGBA8
  conversion), copy the blendshape weights and z back (pinned), all on the engine's one stream.
* the texture never leaves the GPU: ``rgba`` is a (B, H, W, 4) uint8 device tensor, the layout
  CUDA-GL interop copies into an RGBA8 texture (FACTS.md). It is overwritten by the next step;
  consumers copy it on ``stream`` (or after ``ready``) before calling ``step`` again.
* the fade (z_out = neutral + p·(src − neutral), src = held or fresh ẑ) runs inside the graph, and
  the held latent is a device buffer the graph itself updates, so no step needs a device→host read
  before the replay.

Import torch.cuda only here; the engine imports this module lazily, only for ``device="cuda"``.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import torch

from .model import AvatarModel, animate, fold_animation, stack_folded, to_rgba8


def _decoder_signature(dec: torch.nn.Module) -> tuple:
    return (type(dec).__name__,) + tuple((k, tuple(v.shape)) for k, v in dec.state_dict().items())


def group_signature(model: AvatarModel) -> tuple:
    cfg = model.net.config
    return (cfg.arch, cfg.layers, cfg.hidden, cfg.input_proj, model.net.feature_dim, model.net.z_dim,
            model.window, _decoder_signature(model.decoder))


class CudaBatch:
    """B avatars of one signature, run as one graph replay."""

    def __init__(self, models: list[AvatarModel], device: torch.device, stream: torch.cuda.Stream,
                 use_graph: bool = True, dtype: torch.dtype = torch.float16):
        self.models = models
        self.device, self.stream, self.dtype = device, stream, dtype
        b = len(models)
        net0 = models[0].net
        self.arch, self.layers = net0.config.arch, net0.config.layers
        folded = [fold_animation(m.net, m.norm) for m in models]
        self.params = stack_folded(folded, device=device, dtype=dtype)
        shared = all(m.decoder is models[0].decoder for m in models)
        with torch.cuda.stream(stream):
            if shared:
                self._dec = copy.deepcopy(models[0].decoder).to(device=device, dtype=dtype).eval()
                self._decode = self._dec
            else:
                from torch.func import functional_call, stack_module_state, vmap

                copies = [copy.deepcopy(m.decoder).to(device=device, dtype=dtype).eval() for m in models]
                dec_params, dec_buffers = stack_module_state(copies)
                base = copy.deepcopy(copies[0]).to("meta")

                def one(params, buffers, z):
                    tex, w = functional_call(base, (params, buffers), (z[None],))
                    return tex[0], w[0]

                self._stacked = (dec_params, dec_buffers)
                self._decode = lambda z: vmap(one)(dec_params, dec_buffers, z)
            t, d, zdim = net0.window, net0.feature_dim, net0.z_dim
            self.x = torch.zeros(b, t, d, device=device, dtype=dtype)
            self.presence = torch.zeros(b, 1, device=device, dtype=dtype)
            self.hold = torch.zeros(b, 1, device=device, dtype=torch.bool)
            self.z_hold = self.params["neutral_z"].clone()
            self.neutral = self.params["neutral_z"]
            self.x_host = torch.zeros(b, t, d, dtype=dtype).pin_memory()
            self.ctrl_host = torch.zeros(b, 2, dtype=torch.float32).pin_memory()
            # Output buffers are created by the first (eager) forward so their shapes follow the decoder.
            self.rgba = self.weights = self.z_out = None
        self.ready = torch.cuda.Event()
        self.graph: torch.cuda.CUDAGraph | None = None
        self._warm_and_capture(use_graph)

    # -- the captured work --------------------------------------------------------------------
    def _forward(self) -> None:
        z_net = animate(self.params, self.x, self.arch, self.layers)
        src = torch.where(self.hold, self.z_hold, z_net)
        z = self.neutral + self.presence * (src - self.neutral)
        self.z_hold.copy_(src)
        tex, w = self._decode(z)
        rgba = to_rgba8(tex)
        if self.rgba is None:  # first eager call only (never during capture)
            self.rgba = torch.empty_like(rgba)
            self.weights = torch.empty(w.shape, device=self.device, dtype=torch.float32)
            self.z_out = torch.empty(z.shape, device=self.device, dtype=torch.float32)
        self.rgba.copy_(rgba)
        self.weights.copy_(w)
        self.z_out.copy_(z)

    def _warm_and_capture(self, use_graph: bool) -> None:
        with torch.no_grad(), torch.cuda.stream(self.stream):
            for _ in range(3):  # warm-up on the side stream: cuDNN/cuBLAS choices, allocator pools
                self._forward()
        self.stream.synchronize()
        self.weights_host = torch.zeros(self.weights.shape, dtype=torch.float32).pin_memory()
        self.z_host = torch.zeros(self.z_out.shape, dtype=torch.float32).pin_memory()
        self.z_hold.copy_(self.neutral)
        if use_graph:
            self.graph = torch.cuda.CUDAGraph()
            with torch.no_grad(), torch.cuda.graph(self.graph, stream=self.stream):
                self._forward()
            self.stream.synchronize()
            self.z_hold.copy_(self.neutral)

    # -- one step -------------------------------------------------------------------------------
    def run(self, windows: list[np.ndarray], presence: np.ndarray, hold: np.ndarray) -> dict:
        t0 = time.perf_counter()
        self.x_host.copy_(torch.from_numpy(np.stack(windows)))
        self.ctrl_host[:, 0] = torch.from_numpy(np.asarray(presence, np.float32))
        self.ctrl_host[:, 1] = torch.from_numpy(np.asarray(hold, np.float32))
        with torch.no_grad(), torch.cuda.stream(self.stream):
            self.x.copy_(self.x_host, non_blocking=True)
            ctrl = self.ctrl_host.to(self.device, non_blocking=True)
            self.presence.copy_(ctrl[:, :1])
            self.hold.copy_(ctrl[:, 1:] > 0.5)
            if self.graph is not None:
                self.graph.replay()
            else:
                self._forward()
            self.weights_host.copy_(self.weights, non_blocking=True)
            self.z_host.copy_(self.z_out, non_blocking=True)
            self.ready.record(self.stream)
        self.ready.synchronize()
        return {"rgba": self.rgba, "weights": self.weights_host.numpy().copy(), "z": self.z_host.numpy().copy(),
                "ms": (time.perf_counter() - t0) * 1e3}


class CudaBackend:
    def __init__(self, models: list[AvatarModel], device: str = "cuda", use_graph: bool = True):
        if not torch.cuda.is_available():
            raise RuntimeError("CUDA backend requested but torch.cuda.is_available() is False")
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(device=self.device)
        groups: dict[tuple, list[int]] = {}
        for i, m in enumerate(models):
            groups.setdefault(group_signature(m), []).append(i)
        self.groups = [(idx, CudaBatch([models[i] for i in idx], self.device, self.stream, use_graph))
                       for idx in groups.values()]
        self.n = len(models)
        self.timings: dict[str, float] = {}

    def run(self, windows: list[np.ndarray], presence: np.ndarray, hold: np.ndarray, keys=None) -> list[tuple]:
        outs: list[tuple | None] = [None] * self.n
        total = 0.0
        for idx, batch in self.groups:
            r = batch.run([windows[i] for i in idx], presence[idx], hold[idx])
            total += r["ms"]
            for j, i in enumerate(idx):
                outs[i] = (r["rgba"][j], r["weights"][j], r["z"][j])
        self.timings = {"step_gpu_ms": total}
        return outs  # type: ignore[return-value]
