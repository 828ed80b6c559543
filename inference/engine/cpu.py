"""CPU backend: the leanest per-avatar path on a few cores.

* The folded animation network (one affine input map + explicit LSTM, model.py) in fp32: a window
  is a few hundred microseconds, so it is not worth reduced precision.
* The decoder in fp32 by default; ``precision="bf16"`` runs it under bfloat16 autocast, which only
  pays on CPUs with native bf16 matrix units (AMX/AVX512-BF16). ``headcast bench inference
  --device cpu --cpu-precision bf16`` measures it; the choice is the user's, not guessed.
* Nothing is recomputed that did not change: a render loop at 90 Hz driven by a 30 Hz camera asks
  for the same window three times, so outputs are cached on (window version, presence, hold) per
  avatar and the texture array is returned again.
* Thread count is a process-wide torch setting; the backend sets it for each call and restores it
  (so a training run or another component in the same process keeps its own setting).
"""
from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

from inference.animation.train import torch_threads

from .model import AvatarModel, animate, fold_animation, stack_folded, to_rgba8


class CpuBackend:
    def __init__(self, models: list[AvatarModel], threads: int = 2, precision: str = "fp32"):
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"cpu precision must be fp32 or bf16, got {precision!r}")
        self.models = models
        self.threads = threads
        self.precision = precision
        self.params = [stack_folded([fold_animation(m.net, m.norm)]) for m in models]
        self.neutral = [p["neutral_z"][0] for p in self.params]
        for m in models:
            m.decoder.eval()
        self._hold = [None] * len(models)  # last tracked ẑ per avatar (torch (Z,))
        self._cache: list[tuple | None] = [None] * len(models)
        self._out: list[tuple | None] = [None] * len(models)
        self.timings: dict[str, float] = {}

    def run(self, windows: list[np.ndarray], presence: np.ndarray, hold: np.ndarray, keys: list) -> list[tuple]:
        """Per avatar: window (T, D) raw features → (rgba8 (H, W, 4) numpy, weights (K,), z (Z,))."""
        t_lstm = t_dec = 0.0
        outs = []
        with torch_threads(self.threads), torch.inference_mode():
            for i, model in enumerate(self.models):
                key = (keys[i], float(presence[i]), bool(hold[i]))
                if self._cache[i] == key and self._out[i] is not None:
                    outs.append(self._out[i])
                    continue
                t0 = time.perf_counter()
                neutral = self.neutral[i]
                if hold[i]:  # lost or waiting: the last tracked output (neutral if there never was one)
                    src = self._hold[i] if self._hold[i] is not None else neutral
                else:
                    arch, layers = model.net.config.arch, model.net.config.layers
                    src = animate(self.params[i], torch.from_numpy(windows[i])[None], arch, layers)[0]
                    self._hold[i] = src
                z = neutral + float(presence[i]) * (src - neutral)
                t1 = time.perf_counter()
                ctx = torch.autocast("cpu", dtype=torch.bfloat16) if self.precision == "bf16" else nullcontext()
                with ctx:
                    tex, w = model.decoder(z[None])
                rgba = to_rgba8(tex.float())[0].numpy()
                t2 = time.perf_counter()
                t_lstm += t1 - t0
                t_dec += t2 - t1
                out = (rgba, w[0].float().numpy().copy(), z.numpy().copy())
                self._cache[i], self._out[i] = key, out
                outs.append(out)
        self.timings = {"lstm_ms": t_lstm * 1e3, "decoder_ms": t_dec * 1e3}
        return outs

    def reset_cache(self) -> None:
        self._cache = [None] * len(self.models)
