"""The render loop: scene + driven avatars, per eye, on any backend, never waiting on inference.

    node = RenderNode(scene, assets, source)            # assets[i] belongs to scene.avatars[i]
    stats = node.run(HeadlessBackend(cfg), max_frames=100)

Per frame (`begin_frame`): poll `source.latest(stream, t_display)` for every slot — a call that
returns at once with the newest state or None; a source that raises or returns garbage costs a
counted, skipped state (`source_errors`, `bad_states`), never the frame. Each avatar's
`AvatarSampler` turns the states into this display time's look (interpolation / bounded
extrapolation, fade to an idle look when presence drops; see `state_sampler`). Controllers (or
the desktop's simulated hand) move avatars through `grab`. New textures are uploaded once per
frame (`texture_upload`: host — direct or PBO, whichever measured faster at set-up — or CUDA-GL
interop with fallback). Then `draw_eye` per view and
`end_frame` records the stage timings (`frame_stats`).

Timings are CPU wall times of each stage. GL queues work asynchronously, so by default the GPU
cost lands in whichever call waits for it (usually submit); `sync_timings=True` adds a glFinish
after each stage so that upload and per-eye draw include their GPU work (benchmarks; it stalls
the pipeline, so not for production).
"""
from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from OpenGL import GL

from xr_runtime.avatars.assets import AvatarAssets
from xr_runtime.avatars.sampler import AvatarSampler, SampledLook, SamplerConfig
from xr_runtime.avatars.state import AvatarStateSource, BadState, check_state
from xr_runtime.backends.base import Backend, BackendFrame, BackendStats, SubmitTiming
from xr_runtime.gl.eye_view import EyeView
from xr_runtime.gl.texture_upload import TextureUploader
from xr_runtime.latency.frame_stats import FrameRecord, FrameStats
from xr_runtime.latency.recorder import LatencyRecorder
from xr_runtime.scene.grab import GrabConfig, GrabController
from xr_runtime.scene.placement import body_model_matrix, head_model_matrix, rigid_matrix, transform_from_rigid
from xr_runtime.scene.scene_file import Scene

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RenderNodeConfig:
    sampler: SamplerConfig = SamplerConfig()
    grab: GrabConfig = GrabConfig()
    allow_interop: bool = True
    # Host textures: "auto" = the faster of direct / PBO, measured on this context (texture_upload).
    upload_method: Literal["auto", "direct", "pbo"] = "auto"
    sync_timings: bool = False
    scene_save_path: Path | None = None   # where `save_scene()` writes (default: nowhere)
    # Draw the optical frame counter (media.optical_marker) in every eye's corner and log when
    # each frame was shown, for `headcast bench glass`.
    optical_marker: bool = False
    # The packages' screen-space refinement (gl/refinement_pass.py): "auto" runs it where the
    # package's manifest made it the default for this path (CUDA: where it measured better; CPU:
    # better and within budget — no package so far, docs/AVATAR.md), "on" wherever a package
    # carries one (CUDA-GL interop when available, else the CPU), "off" never.
    refinement: Literal["auto", "on", "off"] = "auto"
    refinement_threads: int = 1           # torch threads of the CPU path


@dataclass
class _Avatar:
    index: int
    stream: str
    handle: object
    placement: np.ndarray                # rigid model → world of the slot
    scale: float
    sampler: AvatarSampler
    look: SampledLook | None = None
    model: np.ndarray | None = None
    body: np.ndarray | None = None  # the torso's (and the neck base's) model matrix
    states_ok: int = 0
    live_frames: int = 0                 # frames shown fully live (fade ≈ 1)
    visible: bool = True                 # False: a room slot that is gone (not drawn)


@dataclass
class NodeCounters:
    source_errors: int = 0
    bad_states: int = 0
    empty_polls: int = 0
    placement_changes: int = 0
    scene_saves: int = 0
    errors_by_kind: dict = field(default_factory=dict)


class RenderNode:
    def __init__(self, scene: Scene, assets: list[AvatarAssets], source: AvatarStateSource,
                 config: RenderNodeConfig | None = None, spectator=None, scene_link=None) -> None:
        """`spectator`: a `spectator.tap.SpectatorTap` that copies one eye out for the web page
        and the virtual camera (only while one of them wants a frame). `scene_link`: a shared
        room's scene (`xr_runtime/room_link.RoomSceneLink`): placements come from it every frame,
        local grabs go to it as edits, and a slot it no longer has is not drawn."""
        if len(assets) != len(scene.avatars):
            raise ValueError(f"{len(scene.avatars)} avatar slots but {len(assets)} assets")
        self.scene = scene
        self.assets = assets
        self.source = source
        self.scene_link = scene_link
        self.config = config or RenderNodeConfig()
        self.counters = NodeCounters()
        self.stats = FrameStats()
        self.grab = GrabController(self.config.grab)
        self.renderer = None
        self.uploader: TextureUploader | None = None
        self.avatars: list[_Avatar] = []
        self._logged: set[str] = set()
        self._frame_start = 0.0
        self._draw_eyes: list[float] = []
        self._stage: dict[str, float] = {}
        self._passthrough: dict[int, np.ndarray] = {}
        self._draw_states: list = []
        self.backend_stats = None
        self._upload_counters = None
        self._sessions: list = []             # BackendStats of each session of the last run
        self.latency = LatencyRecorder()
        self.markers_shown: collections.deque = collections.deque(maxlen=1_000_000)  # (frame index, shown at)
        self._traces: list = []               # traces of the states polled this frame
        self._t_upload_ns = 0
        self.spectator = spectator
        self.refinement_paths: dict[str, str] = {}   # stream → cpu / cuda / off (why)
        self._refinement_summary: dict = {}

    # ------------------------------------------------------------------------------ set-up

    def setup_gl(self) -> None:
        """Create the renderer and upload every avatar; the backend's GL context must be current."""
        from xr_runtime.gl.gltf_environment import make_scene_renderer

        self.renderer = make_scene_renderer(self.scene.environment)
        if self.spectator is not None:
            self.spectator.setup_gl()
        self.uploader = TextureUploader(self.renderer, self.config.allow_interop, self.config.upload_method)
        # Calibrate the host upload for the avatars' texture sizes now, not inside the frame loop.
        self.uploader.prepare({tuple(asset.neutral_texture.shape[:2]) for asset in self.assets})
        # After a lost session the GL objects are gone, but placements, samplers (state history,
        # fade) and counters carry over to the new context.
        previous = {a.index: a for a in self.avatars}
        self.avatars = []
        for index, (slot, asset) in enumerate(zip(self.scene.avatars, self.assets)):
            # A learned alpha (whole-head packages) shows in the idle texture's A channel.
            handle = self.renderer.add_avatar(asset.mesh, texture_size=asset.neutral_texture.shape[:2],
                                              soft_edges=bool((asset.neutral_texture[..., 3] < 255).any()))
            # Her idle (relaxed, open-eyed) texture: the eyelid rig draws the eye regions from it.
            self.renderer.set_eye_texture(handle, asset.neutral_texture)
            self.refinement_paths[slot.stream] = self._attach_refinement(handle, asset)
            old = previous.get(index)
            if old is not None:
                self.avatars.append(_Avatar(index, slot.stream, handle, old.placement, old.scale, old.sampler,
                                            states_ok=old.states_ok, live_frames=old.live_frames))
                continue
            sampler = AvatarSampler(asset.neutral_texture, asset.weights0(), self.config.sampler)
            t = slot.transform
            self.avatars.append(_Avatar(index, slot.stream, handle, rigid_matrix(t.position, t.rotation),
                                        t.scale, sampler))

    def _attach_refinement(self, handle, asset) -> str:
        """Give the renderer this avatar's refinement on the path the config and the manifest
        choose; returns that path ("cuda", "cpu") or "off: why"."""
        mode = self.config.refinement
        if asset.refinement is None:
            return "off: the package has no refinement"
        if mode == "off":
            return "off: --refine off"
        from xr_runtime.gl import refinement_pass

        default = asset.refinement_default or {}
        net, cfg = asset.refinement
        if not self.renderer.software_rasteriser and (mode == "on" or default.get("cuda")):
            import torch

            if torch.cuda.is_available():
                try:
                    self.renderer.set_refinement(handle, refinement_pass.CudaCorrection(net, cfg))
                    return "cuda"
                except Exception as exc:  # no interop on this GL: the CPU path, if asked for
                    self._log_once("refinement_cuda", f"CUDA refinement unavailable ({exc}); CPU path or off")
        if mode == "on" or default.get("cpu"):
            from inference.head_model.refinement import Refiner

            self.renderer.set_refinement(handle, refinement_pass.HostCorrection(
                Refiner(net, cfg, threads=self.config.refinement_threads)))
            return "cpu"
        return "off: not the package's default on this path (--refine on runs it)"

    def teardown_gl(self) -> None:
        if self.spectator is not None:
            self.spectator.teardown_gl()
        if self.uploader is not None:
            self._upload_counters = self.uploader.counters
            self.uploader.close()
            self.uploader = None
        if self.renderer is not None:
            self._refinement_summary = self.renderer.refinement_summary()
            self.renderer.close()
            self.renderer = None

    def run(self, backend: Backend, *, max_frames: int | None = None, seconds: float | None = None,
            stop: threading.Event | None = None, reconnects: int = 0, reconnect_wait_s: float = 1.0) -> dict:
        """Render until max_frames / seconds / stop / the backend ends. A backend that reports its
        session lost (an OpenXR runtime that died or restarted) is reopened up to `reconnects`
        times, `reconnect_wait_s` apart; the frame and time limits span all sessions."""
        t_end = None if seconds is None else time.monotonic() + seconds
        self._sessions = []
        attempts = 0
        while True:
            frames_done = sum(s.frames for s in self._sessions)
            remaining_frames = None if max_frames is None else max_frames - frames_done
            remaining_s = None if t_end is None else max(0.0, t_end - time.monotonic())
            try:
                result = self._run_session(backend, remaining_frames, remaining_s, stop)
            except Exception as exc:
                if attempts == 0 or attempts > reconnects:
                    raise
                log.warning("reopening the %s backend failed: %s", backend.name, exc)
                result = None
            if result is not None:
                self._sessions.append(result)
                if result.reason != "lost":
                    break
            finished = (remaining_frames is not None and remaining_frames <= (result.frames if result else 0)) or \
                (t_end is not None and time.monotonic() >= t_end) or (stop is not None and stop.is_set())
            if finished or attempts >= reconnects:
                break
            attempts += 1
            log.warning("%s session lost; reopening (%d of %d) in %.1f s", backend.name, attempts, reconnects,
                        reconnect_wait_s)
            if stop is not None:
                stop.wait(reconnect_wait_s)
            else:
                time.sleep(reconnect_wait_s)
        self.backend_stats = self._merged_backend_stats()
        return self.summary()

    def _run_session(self, backend: Backend, max_frames, seconds, stop):
        backend.open()
        try:
            self.setup_gl()
            try:
                return backend.run(self, max_frames=max_frames, seconds=seconds, stop=stop)
            finally:
                self.teardown_gl()
        finally:
            backend.close()

    def _merged_backend_stats(self):
        if not self._sessions:
            return None
        last = self._sessions[-1]
        merged = BackendStats(last.backend, frames=sum(s.frames for s in self._sessions),
                              views=sum(s.views for s in self._sessions),
                              seconds=sum(s.seconds for s in self._sessions), reason=last.reason, info=dict(last.info))
        merged.info["sessions"] = len(self._sessions)
        merged.info["lost_sessions"] = sum(s.reason == "lost" for s in self._sessions)
        return merged

    # ------------------------------------------------------------------------------ frame

    def _log_once(self, kind: str, message: str) -> None:
        self.counters.errors_by_kind[kind] = self.counters.errors_by_kind.get(kind, 0) + 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("%s (further ones only counted)", message)

    def _poll(self, avatar: _Avatar, t_display_ns: int):
        state = self._poll_checked(avatar, t_display_ns)
        if state is not None and state.trace is not None:
            self._traces.append(state.trace)
        return state

    def _poll_checked(self, avatar: _Avatar, t_display_ns: int):
        try:
            state = self.source.latest(avatar.stream, t_display_ns)
        except Exception as exc:  # a failing producer must not take the frame loop with it
            self.counters.source_errors += 1
            self._log_once(f"source:{type(exc).__name__}", f"avatar source raised for {avatar.stream}: {exc!r}")
            return None
        if state is None:
            self.counters.empty_polls += 1
            return None
        try:
            state = check_state(state, avatar.handle.blendshape_count)
        except BadState as exc:
            self.counters.bad_states += 1
            self._log_once("bad_state", f"unusable state for {avatar.stream}: {exc}")
            return None
        avatar.states_ok += 1
        return state

    def _sync(self) -> None:
        if self.config.sync_timings:
            GL.glFinish()

    def begin_frame(self, frame: BackendFrame) -> None:
        self._frame_start = time.perf_counter()
        self._draw_eyes = []
        self._traces = []
        if self.spectator is not None:
            self.spectator.collect()       # readbacks still running when the last frame ended
        t_display = frame.display_time_ns
        for avatar in self.avatars:
            avatar.sampler.observe(self._poll(avatar, t_display), t_display)
            avatar.look = avatar.sampler.sample(t_display)
            avatar.live_frames += avatar.look.fade > 0.99 and avatar.visible   # drawn, fully live
        if frame.hands:
            self._apply_grab(frame.hands)
        if self.scene_link is not None:
            self._follow_link()
        for avatar in self.avatars:
            avatar.model = head_model_matrix(avatar.placement, avatar.scale, avatar.look.pose)
            avatar.body = body_model_matrix(avatar.placement, avatar.scale, avatar.look.pose)
        t_sampled = time.perf_counter()
        items = [(a.handle, a.look.texture, a.look.texture_key, a.look.cuda_stream) for a in self.avatars]
        self._passthrough = self.uploader.upload(items)
        self._sync()
        t_uploaded = time.perf_counter()
        self._t_upload_ns = time.monotonic_ns()
        self._stage = {"sample": (t_sampled - self._frame_start) * 1e3, "upload": (t_uploaded - t_sampled) * 1e3,
                       "wait": frame.wait_ms}

    def _apply_grab(self, hands) -> None:
        placements = {str(a.index): a.placement for a in self.avatars if a.visible}
        before = set(self.grab.held().values())
        moved = self.grab.update(hands, placements)
        for key, matrix in moved.items():
            avatar = self.avatars[int(key)]
            if not np.allclose(avatar.placement, matrix, atol=1e-6):
                avatar.placement = np.asarray(matrix, dtype=np.float32)
                self.counters.placement_changes += 1
                if self.scene_link is not None:
                    self.scene_link.moved(avatar.stream, transform_from_rigid(avatar.placement, avatar.scale))
        if self.scene_link is not None:
            after = set(self.grab.held().values())
            for key in after - before:
                self.scene_link.grabbed(self.avatars[int(key)].stream)
            for key in before - after:
                self.scene_link.released(self.avatars[int(key)].stream)

    def _follow_link(self) -> None:
        """The room's placements win, except for an avatar this node holds with the room's consent
        (it follows the hand here, and the room hears of each move)."""
        held = {self.avatars[int(k)].stream for k in self.grab.held().values()}
        for avatar in self.avatars:
            placed = self.scene_link.placement(avatar.stream)
            avatar.visible = placed is not None
            if placed is None or (avatar.stream in held and self.scene_link.held_here(avatar.stream)):
                continue
            matrix = rigid_matrix(placed.position, placed.rotation)
            if not np.allclose(avatar.placement, matrix, atol=1e-6) or avatar.scale != placed.scale:
                avatar.placement, avatar.scale = matrix, placed.scale
                self.counters.placement_changes += 1

    def draw_eye(self, frame: BackendFrame, eye: EyeView) -> None:
        from xr_runtime.gl.renderer import AvatarDrawState

        t = time.perf_counter()
        states = []
        for a in self.avatars:
            texture = self._passthrough.pop(a.handle.id, None)  # first eye only
            if a.visible:
                states.append(AvatarDrawState(a.handle, a.model, a.look.weights, texture, eyes=a.look.eyes,
                                              body_matrix=a.body))
        overlay = None
        if self.config.optical_marker:
            from xr_runtime.gl.marker_overlay import draw_marker

            overlay = lambda w, h: draw_marker(frame.index, w, h)  # noqa: E731
        self.renderer.draw(eye.view, eye.projection, states, eye.target, overlay=overlay)
        if self.spectator is not None:
            self.spectator.after_eye(frame.index, frame.display_time_ns, eye.index, eye.target)
        self._sync()
        self._draw_eyes.append((time.perf_counter() - t) * 1e3)

    def _draw_spectator(self, view, projection, target) -> None:
        """The scene from a free spectator camera (textures are already uploaded by the eyes)."""
        from xr_runtime.gl.renderer import AvatarDrawState

        states = [AvatarDrawState(a.handle, a.model, a.look.weights, None, eyes=a.look.eyes, body_matrix=a.body)
                  for a in self.avatars if a.visible]
        self.renderer.draw(view, projection, states, target)

    def end_frame(self, frame: BackendFrame, timing: SubmitTiming) -> None:
        t_submit = timing.submitted_ns or time.monotonic_ns()
        t_display = timing.displayed_ns or frame.display_time_ns
        if self.spectator is not None:
            self.spectator.after_frame(frame.index, frame.display_time_ns, self._draw_spectator)
            self.spectator.collect()       # this frame's readback, usually finished with the frame
        for trace in self._traces:
            self.latency.displayed(trace, self._t_upload_ns, t_submit, t_display)
        if self.config.optical_marker:
            self.markers_shown.append((frame.index, t_display))
        self._traces = []
        frame_ms = (time.perf_counter() - self._frame_start) * 1e3 - timing.output_ms
        self.stats.add(FrameRecord(self._stage.get("wait", 0.0), self._stage.get("sample", 0.0),
                                   self._stage.get("upload", 0.0), self._draw_eyes, timing.submit_ms,
                                   timing.output_ms, frame_ms), time.monotonic_ns())

    # ------------------------------------------------------------------------------ scene

    def pick_distance(self, origin, direction, radius: float = 0.3) -> float | None:
        """Distance along a ray to the nearest avatar passing within `radius` of it (mouse grab)."""
        best = None
        for a in self.avatars:
            p = np.asarray(a.placement[:3, 3], dtype=float) - np.asarray(origin, dtype=float)
            t = float(np.dot(p, direction))
            if t > 0 and np.linalg.norm(p - t * np.asarray(direction)) <= radius and (best is None or t < best):
                best = t
        return best

    def placements(self) -> list:
        return [transform_from_rigid(a.placement, a.scale) for a in self.avatars]

    def save_scene(self, path: Path | None = None) -> Path:
        """Write the scene with the current placements back, atomically (Scene.save)."""
        path = Path(path or self.config.scene_save_path or "")
        if not str(path):
            raise ValueError("no path to save the scene to")
        for slot, transform in zip(self.scene.avatars, self.placements()):
            slot.transform = transform
        self.scene.save(path)
        self.counters.scene_saves += 1
        log.info("scene saved to %s", path)
        return path

    # ------------------------------------------------------------------------------ reporting

    def stream_states(self) -> dict[str, dict]:
        out = {}
        for a in self.avatars:
            look = a.look
            out[a.stream] = {"fade": round(look.fade, 3) if look else 0.0, "states_ok": a.states_ok,
                             "position": [round(float(v), 4) for v in a.placement[:3, 3]], "visible": a.visible,
                             "distinct_states": a.sampler.states_seen, "live_frames": a.live_frames,
                             "state": "live" if look and look.fade > 0.99 else
                                      ("idle" if not look or look.fade < 0.01 else "fading")}
        return out

    def status_lines(self) -> list[str]:
        """Text for the desktop overlay: fps, per-stage ms, stream states."""
        m = self.stats.recent_means()
        lines = [f"{self.stats.fps():5.1f} fps  frame {m.get('frame', 0):.2f} ms"]
        if m:
            lines.append(f"wait {m['wait']:.2f} sample {m['sample']:.2f} upload {m['upload']:.2f} "
                         f"draw {m['draw']:.2f} submit {m['submit']:.2f} ms")
        lat = self.latency.recent_ms()
        if lat:
            lines.append(f"camera->display {lat['end_to_end']:.1f} ms: features {lat['features']:.1f} "
                         f"net {lat['network']:.1f} queue {lat['queue']:.1f} infer {lat['inference']:.1f} "
                         f"upload {lat['upload']:.1f} submit {lat['submit']:.1f} display {lat['display']:.1f}")
        for stream, s in self.stream_states().items():
            lines.append(f"{stream}: {s['state']} fade {s['fade']:.2f} states {s['distinct_states']}")
        if self.counters.source_errors or self.counters.bad_states:
            lines.append(f"source errors {self.counters.source_errors} bad states {self.counters.bad_states}")
        return lines

    def summary(self) -> dict:
        c = self.counters
        upload = self.uploader.counters if self.uploader else self._upload_counters
        b = self.backend_stats
        return {
            "backend": b.backend if b else None,
            "frames": b.frames if b else 0,
            "views": b.views if b else 0,
            "seconds": b.seconds if b else 0.0,
            "fps": (b.frames / b.seconds) if b and b.seconds > 0 else 0.0,
            "stop_reason": b.reason if b else "",
            "backend_info": b.info if b else {},
            "avatars": len(self.avatars),
            "stages_ms": self.stats.summary(),
            "counters": {"source_errors": c.source_errors, "bad_states": c.bad_states, "empty_polls": c.empty_polls,
                         "placement_changes": c.placement_changes, "scene_saves": c.scene_saves,
                         "errors_by_kind": dict(c.errors_by_kind)},
            "uploads": upload.__dict__ if upload else {},
            "streams": self.stream_states(),
            "sync_timings": self.config.sync_timings,
            "latency": self.latency.report(),
            "refinement": {"paths": dict(self.refinement_paths),
                           **(self.renderer.refinement_summary() if self.renderer else self._refinement_summary)},
            **({"spectator": self.spectator.summary()} if self.spectator is not None else {}),
            **({"room": self.scene_link.summary()} if self.scene_link is not None else {}),
        }
