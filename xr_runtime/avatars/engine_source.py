"""The streaming engine (`inference/engine`) as the render node's avatar state source.

A `WorkerStateSource` thread runs `engine.step(receiver)` — receiver frames → LSTM → decoder — and
converts each `AvatarState` to the render node's `AvatarFrameState`:

* texture (numpy or CUDA tensor) and weights as they are; a new texture serial every step that
  produced a new texture (the engine caches unchanged windows and returns the same object);
* `t_state_ns` = when the newest frame was received on this host (the engine's capture times are
  on the capture host's clock; receive time is on ours), else the inference end time;
* CUDA textures are views of the engine's static output buffer: the interop copy runs on the
  engine's stream (`engine.backend.stream`), so it is ordered against the next graph replay;
* presence = the engine's own faded presence (it already relaxes z to the neutral face);
* pose: the driver's head motion relative to their own reference pose (``calibration.head_pose``:
  averaged over the stream's first good frames, One Euro smoothed with real frame intervals,
  clamped), turning the avatar's head about the top of its neck; ``head_motion=None`` keeps the
  head still on its slot.

The render node runs the engine (xr_runtime → inference, the card's direction); the frame's own
timestamps travel on the engine's state, so the latency trace is built from the state alone.
"""
from __future__ import annotations

import time

import numpy as np

from calibration.head_pose import HeadMotion, HeadMotionConfig, HeadMotionTracker
from inference.avatar_package import CANONICAL_UNIT_M
from inference.head_model.torso import NECK_PIVOT  # noqa: F401  (re-exported: where the head turns)
from streaming.receiver import FrameArrivals
from xr_runtime.avatars.assets import AvatarAssets, idle_assets, load_packages, package_for
from xr_runtime.avatars.state import IDENTITY_POSE, AvatarFrameState, AvatarPose
from xr_runtime.avatars.worker_source import PACINGS, WorkerPacing, WorkerStateSource, receiver_wake
from xr_runtime.latency.recorder import LatencyTrace



def avatar_head_pose(motion: HeadMotion) -> AvatarPose:
    """The avatar's head pose (metres, about the neck) for a driver's head motion (IOD units)."""
    return AvatarPose(motion.rotation, tuple(v * CANONICAL_UNIT_M for v in motion.translation), 1.0,
                    tuple(v * CANONICAL_UNIT_M for v in NECK_PIVOT))


def latency_trace(st, clock=None) -> LatencyTrace | None:
    """Stage times of the newest frame behind an engine state, on this host's clock.

    Capture-host times are mapped with the stream's clock calibration when its node reported one
    (same host: identity)."""
    if st.seq < 0 or st.t_receive_ns <= 0:
        return None
    mapping = clock.mapping_for(st.stream_id) if clock is not None else None
    conv = mapping.to_remote if mapping else (lambda t: t)
    return LatencyTrace(st.stream_id, st.seq, conv(st.t_capture_ns), conv(st.t_features_ns),
                        conv(st.t_send_ns), st.t_receive_ns, st.t_inference_start_ns, st.t_inference_end_ns,
                        clock_mapped=mapping is not None)


def engine_state_source(engine, receiver, period_s: float = 1 / 60, clock=None,
                        head_motion: HeadMotionConfig | None = HeadMotionConfig(),
                        pacing: str = "frames") -> WorkerStateSource:
    """The engine on a worker thread. `pacing` "frames": a step as soon as the receiver accepts a
    frame (and every idle period without frames, for fades); "timer": every `period_s`. A source
    that cannot signal arrivals (not a `FrameArrivals`) is stepped on the timer."""
    serials: dict[str, tuple[int, object]] = {}
    heads: dict[str, tuple[HeadMotionTracker, int]] = {}  # stream → (tracker, last seq it saw)

    def head_pose(sid: str, st) -> AvatarPose:
        if head_motion is None:
            return IDENTITY_POSE
        tracker, seen = heads.get(sid, (None, -1))
        if tracker is None:
            tracker = HeadMotionTracker(head_motion)
        if st.seq >= 0 and st.seq != seen and st.t_capture_ns > 0:
            p = st.pose  # the tracker's pose of the newest good frame (camera frame)
            tracker.update(p.rotation, p.translation, p.scale, st.t_capture_ns)
        heads[sid] = (tracker, st.seq)
        return avatar_head_pose(tracker.motion)

    def step() -> dict[str, AvatarFrameState]:
        out = {}
        for sid, st in engine.step(receiver).items():
            serial, last = serials.get(sid, (0, None))
            if st.texture is not last:
                serial += 1
                serials[sid] = (serial, st.texture)
            t_state = st.t_receive_ns if st.t_receive_ns > 0 else st.t_inference_end_ns
            stream = None
            if type(st.texture).__module__.startswith("torch") and st.texture.is_cuda:
                # The CUDA backend decodes into static buffers on its one stream: copying on that
                # stream orders the interop copy against the next replay (no torn textures).
                engine_stream = getattr(engine.backend, "stream", None)
                stream = getattr(engine_stream, "cuda_stream", None)
            out[sid] = AvatarFrameState(st.texture, np.asarray(st.weights, np.float32), head_pose(sid, st),
                                        float(min(1.0, max(0.0, st.face_present))), t_state_ns=int(t_state),
                                        t_ready_ns=time.monotonic_ns(), texture_serial=serial, cuda_stream=stream,
                                        trace=latency_trace(st, clock), eyes=getattr(st, "eyes", None))
        return out

    if pacing not in PACINGS:
        raise ValueError(f"unknown engine pacing {pacing!r} (one of {', '.join(PACINGS)})")
    if pacing == "frames" and isinstance(receiver, FrameArrivals):
        worker_pacing = WorkerPacing(wake=receiver_wake(receiver, getattr(engine, "stream_ids", None)))
    else:
        worker_pacing = WorkerPacing(period_s=period_s)
    source = WorkerStateSource(step, worker_pacing, name="streaming-engine")
    source.engine = engine  # for stats and debugging
    return source


def reference_engine_source(scene, receiver, texture_size: int = 128, device: str = "cpu", clock=None,
                            head_motion: HeadMotionConfig | None = HeadMotionConfig(), pacing: str = "frames"):
    """Development: untrained reference avatars (real shapes, random weights) on every slot, so the
    whole live path — socket, engine, upload, render — runs without avatar packages.
    Returns (source, assets)."""
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.reference_avatar import reference_avatar
    from xr_runtime.avatars.dev_source import dev_head_mesh

    models = {slot.stream: reference_avatar(texture_size, seed=i) for i, slot in enumerate(scene.avatars)}
    engine = StreamingEngine(models, EngineConfig(device=device, threads=1))
    assets = []
    for model in models.values():
        texture, weights = idle_face_of(model)
        assets.append(AvatarAssets(dev_head_mesh(blendshapes=len(weights)), texture, weights))
    return engine_state_source(engine, receiver, clock=clock, head_motion=head_motion, pacing=pacing).start(), assets


def idle_face_of(model) -> tuple[np.ndarray, np.ndarray]:
    """The idle look of a reference model (no package): the decoder's output for the network's
    neutral z, what the engine itself relaxes to when a stream is lost (state.py). Packages use
    `inference.engine.package_loader.idle_face`, the same definition."""
    import torch

    from inference.engine.model import to_rgba8

    with torch.no_grad():
        texture, weights = model.decoder(model.net.neutral_z[None])
    return to_rgba8(texture)[0].cpu().numpy(), weights[0].cpu().numpy().astype(np.float32)


def package_engine_source(scene, receiver, packages: dict | None = None, device: str = "cpu", clock=None,
                          head_motion: HeadMotionConfig | None = HeadMotionConfig(), pacing: str = "frames"):
    """The product path: every slot's package (mesh, decoder, animation network) on the streaming
    engine. `packages`: the scene's loaded packages (`assets.load_packages`, each loaded once);
    None loads them here.
    Raises ValueError naming the package when one carries no animation network.
    Returns (source, assets); slots sharing a package share its model."""
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.package_loader import avatar_model_from_package

    packages = load_packages(scene) if packages is None else packages
    loaded: dict = {}
    models, assets = {}, []
    for slot in scene.avatars:
        package = package_for(packages, slot)
        if id(package) not in loaded:
            loaded[id(package)] = (avatar_model_from_package(package), idle_assets(package))
        models[slot.stream] = loaded[id(package)][0]
        assets.append(loaded[id(package)][1])
    engine = StreamingEngine(models, EngineConfig(device=device, threads=1))
    return engine_state_source(engine, receiver, clock=clock, head_motion=head_motion, pacing=pacing).start(), assets
