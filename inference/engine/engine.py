"""StreamingEngine: receiver frames → per-avatar texture, blendshape weights and head pose, every step.

    engine = StreamingEngine({"alice": avatar_a, "bob": avatar_b}, EngineConfig(device="cpu"))
    states = engine.step(receiver)          # or engine.step({"alice": [frame, ...]})
    states["alice"].texture                 # (H, W, 4) uint8 (numpy on CPU, CUDA tensor on GPU)

A *slot* binds a stream id to an avatar (the scene file's avatar slots). ``step`` takes

* a ``streaming.receiver.FrameSource`` (the ``Receiver``): the newest frames not consumed yet are read from its history
  (at most one window's worth — older ones could not influence the output anyway), and its
  ``lost`` flag counts as stream-lost; or
* a mapping ``stream_id -> [FeatureFrame | ReceivedFrame, ...]`` of *new* frames, oldest first (offline
  evaluation, tests); a ``FeatureFrame`` counts as received at ``now_ns``.

It returns an :class:`AvatarState` for every slot, every time: a slot with no stream yet shows its
neutral face (``status="waiting"``), a lost one fades there (state.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from streaming.protocol import FeatureFrame
from streaming.receiver import FrameSource

from inference.features.mp478 import FEATURE_GAIN

from .eye_state import EyeState, eye_state_from_expr52, eye_state_from_features
from .model import AvatarModel
from .state import TRACKING, AvatarState, FadeConfig, FeatureLimits, FeatureRange, GoodFrame, StreamState

MP478_DIM = 478 * 3


@dataclass(frozen=True)
class EngineConfig:
    device: str = "cpu"  # "cpu" | "cuda" | "cuda:N"
    # CPU backend torch intra-op threads. 1, measured: on a 2-core host the render loop and the
    # receiver need the other core, and 2 OpenMP threads competing with them stall at every barrier
    # (a 256² step went from 4.7 ms p50 to >50 ms under load).
    threads: int = 1
    cpu_precision: str = "fp32"  # "fp32" | "bf16" (decoder only; see cpu.py)
    cuda_graphs: bool = True  # False: same fp16 kernels eagerly (debugging, graph-vs-eager tests)
    fade: FadeConfig = field(default_factory=FadeConfig)
    # Features are clamped into each avatar's trained range, far-out frames dropped (state.py);
    # None: passed through as they come (research on raw features).
    feature_limits: FeatureLimits | None = field(default_factory=FeatureLimits)


class StreamingEngine:
    def __init__(self, slots: Mapping[str, AvatarModel], config: EngineConfig = EngineConfig()):
        if not slots:
            raise ValueError("the engine needs at least one stream → avatar slot")
        self.config = config
        self.stream_ids = list(slots)
        self.models = [slots[s] for s in self.stream_ids]
        self.states = {s: StreamState(s, m.window, m.feature_dim, config.fade,
                                      None if config.feature_limits is None
                                      else FeatureRange.from_normalisation(m.norm, config.feature_limits),
                                      feature_kind=getattr(m, "feature_kind", None),
                                      kind_maps=getattr(m, "kind_maps", None))
                       for s, m in slots.items()}
        if config.device == "cpu":
            from .cpu import CpuBackend

            self.backend: Any = CpuBackend(self.models, config.threads, config.cpu_precision)
        elif config.device.startswith("cuda"):
            from .cuda import CudaBackend  # lazily: CPU-only installs never touch torch.cuda

            self.backend = CudaBackend(self.models, config.device, config.cuda_graphs)
        else:
            raise ValueError(f"unknown device {config.device!r} (cpu or cuda)")

    # -- input ---------------------------------------------------------------------------------
    def _ingest(self, source, now_ns: int) -> dict[str, bool]:
        """Feeds new frames into the stream states; returns stream-lost flags from the source."""
        lost: dict[str, bool] = {}
        if source is None:
            return lost
        if isinstance(source, FrameSource):
            snap = source.snapshot()
            for sid, st in self.states.items():
                status = snap.get(sid)
                lost[sid] = bool(status is not None and (status.lost or status.end_of_stream))
                recent = source.window_received(sid, max(len(st.window), 1) + 1)
                for rec in recent:
                    if rec.t_receive_ns > st.last_receive_ns:
                        st.consume(rec.frame, rec.t_receive_ns)
            return lost
        if not isinstance(source, Mapping):
            raise TypeError(f"engine input must be a FrameSource (the receiver) or a mapping of new frames, not {type(source).__name__}")
        for sid, frames in source.items():
            st = self.states.get(sid)
            if st is None:
                continue
            for item in frames:
                if isinstance(item, FeatureFrame):
                    st.consume(item, now_ns)
                else:
                    st.consume(item.frame, item.t_receive_ns)
        return lost

    # -- one step ------------------------------------------------------------------------------
    def step(self, source=None, now_ns: int | None = None) -> dict[str, AvatarState]:
        now = time.monotonic_ns() if now_ns is None else int(now_ns)
        lost = self._ingest(source, now)
        statuses, presence, hold, windows, keys = [], [], [], [], []
        for sid in self.stream_ids:
            st = self.states[sid]
            status = st.status(now, lost.get(sid, False))
            statuses.append(status)
            presence.append(st.update_presence(status, now))
            hold.append(status != TRACKING)
            windows.append(st.window)
            keys.append(st.version)
        t_start = time.monotonic_ns()
        outs = self.backend.run(windows, np.asarray(presence, np.float32), np.asarray(hold, bool), keys)
        t_end = time.monotonic_ns()
        result = {}
        for i, sid in enumerate(self.stream_ids):
            st = self.states[sid]
            rgba, weights, z = outs[i]
            good = st.last_good or GoodFrame(-1, 0, 0, 0, 0)
            eyes = None
            if self.models[i].feature_dim == MP478_DIM:
                if st.last_good is None:
                    eyes = EyeState.relaxed()
                elif st.last_expr52 is not None:
                    eyes = eye_state_from_expr52(st.last_expr52)
                else:
                    eyes = eye_state_from_features(st.window[-1], FEATURE_GAIN)
                eyes = eyes.faded(float(presence[i]))
            result[sid] = AvatarState(
                stream_id=sid, texture=rgba, weights=weights, z=z, pose=st.pose,
                face_present=float(presence[i]), status=statuses[i],
                seq=good.seq, t_capture_ns=good.t_capture_ns, t_receive_ns=good.t_receive_ns,
                t_inference_start_ns=t_start, t_inference_end_ns=t_end,
                t_features_ns=good.t_features_ns, t_send_ns=good.t_send_ns, eyes=eyes,
            )
        return result

    @property
    def timings(self) -> dict[str, float]:
        """The backend's stage timings of the last step (ms)."""
        return dict(self.backend.timings)

    def feature_counters(self) -> dict[str, dict[str, int]]:
        """Per stream: frames whose features were clamped into the avatar's range, and frames dropped."""
        return {sid: {"clamped": st.clamped, "rejected": st.rejected, "unsupported_kind": st.unsupported_kind}
                for sid, st in self.states.items()}

    def neutral_z(self, stream_id: str) -> np.ndarray:
        return self.models[self.stream_ids.index(stream_id)].net.neutral_z.detach().cpu().numpy().copy()
