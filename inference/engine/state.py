"""Per-stream state of the streaming engine: the feature window, presence fading, timestamps.

The window is a ring of the last T *good* feature frames (face-lost frames are not pushed: their
features are meaningless). When a stream starts, or resumes after a gap longer than
``reset_after_s``, the window is filled with copies of the first frame — exactly what the training
windows do at a clip's start — so the network never sees stale expressions from before the gap.

Presence ``p`` ∈ [0, 1] makes face-lost and stream-lost look alive instead of frozen:

    z_out = z_neutral + p · (z_src − z_neutral)

While tracking, ``z_src`` is the network's output and p rises towards 1 with ``fade_in_s``; when
the face or the stream is lost, ``z_src`` holds the last tracked output and p decays towards 0 with
time constant ``fade_out_s``, so the avatar relaxes exponentially to its neutral (idle) face. When
tracking is back it resumes from wherever the fade had got to. While tracking with p = 1 nothing
is filtered: the output is the network's output for the newest frame, no added lag.

**Features outside what the avatar was trained on** (issue 11: values of 10 or 1000 on mp478
mangled the head, and at 1000 it filled the whole view) are measured in the units of the
package's own normalisation, (x − mean) / std per dimension. On the builder's avatars real drivers
stay within ±11.4 of it (the sample clips, both people, every frame: p99.9 at 3.9 and 6.1).
Values beyond ±`clamp_sigma` (12) are clamped to it and the frame counted (``clamped``); a frame
with more than `reject_share` (5 %) of its values out there is not a face at all: it is dropped
like a face-lost frame and counted (``rejected``).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from streaming.protocol import FeatureFrame, HeadPose

log = logging.getLogger(__name__)

TRACKING = "tracking"
FACE_LOST = "face_lost"
STREAM_LOST = "stream_lost"
WAITING = "waiting"  # no good frame yet


@dataclass(frozen=True)
class FadeConfig:
    fade_out_s: float = 0.35  # time constant of the relaxation to neutral after a loss
    fade_in_s: float = 0.08  # time constant of coming back (short: the expression matters)
    hold_s: float = 0.15  # silence (no frame at all) after which a stream counts as lost here
    reset_after_s: float = 0.5  # a gap longer than this refills the window with the next frame


@dataclass(frozen=True)
class FeatureLimits:
    clamp_sigma: float = 12.0   # normalised values beyond ± this are clamped to it
    reject_share: float = 0.05  # a frame with more of its values beyond it is dropped (face lost)


class FeatureRange:
    """The feature range an avatar accepts, per dimension, from its normalisation statistics."""

    def __init__(self, mean: np.ndarray, std: np.ndarray, limits: FeatureLimits = FeatureLimits()):
        mean = np.asarray(mean, np.float32).reshape(-1)
        std = np.asarray(std, np.float32).reshape(-1)
        self.lo = mean - limits.clamp_sigma * std
        self.hi = mean + limits.clamp_sigma * std
        self.max_outside = int(limits.reject_share * mean.size)

    @classmethod
    def from_normalisation(cls, norm, limits: FeatureLimits = FeatureLimits()) -> "FeatureRange":
        return cls(norm.mean, norm.std, limits)

    def check(self, feats: np.ndarray) -> tuple[np.ndarray | None, bool]:
        """(features clamped into range, whether any was clamped); (None, True) for a frame to drop."""
        outside = int(np.count_nonzero((feats < self.lo) | (feats > self.hi)))
        if outside == 0:
            return feats, False
        if outside > self.max_outside:
            return None, True
        return np.clip(feats, self.lo, self.hi), True


@dataclass(frozen=True)
class AvatarState:
    """What the renderer needs for one avatar at one step."""

    stream_id: str
    texture: Any  # (H, W, 4) uint8: numpy on the CPU path, a CUDA tensor on the GPU path
    weights: np.ndarray  # (K,) float32 blendshape weights
    z: np.ndarray  # (Z,) float32 latent actually decoded (after fading)
    pose: HeadPose
    face_present: float  # presence p in [0, 1]: 1 tracking, decays to 0 when lost
    status: str  # tracking | face_lost | stream_lost | waiting
    seq: int  # sequence number of the newest frame in the window (-1 before any)
    t_capture_ns: int  # capture time of that frame (capture host clock)
    t_receive_ns: int  # when the render node received it (render host monotonic clock)
    t_inference_start_ns: int
    t_inference_end_ns: int
    # The same frame's features-ready and send times (capture host clock), carried here so the
    # latency trace needs nothing but the state (0 before any frame).
    t_features_ns: int = 0
    t_send_ns: int = 0
    # Lid closure and gaze read off the newest good frame (mp478 streams; None otherwise), faded
    # with presence; the renderer performs them (inference.engine.eye_state).
    eyes: Any = None


@dataclass(frozen=True)
class GoodFrame:
    """The newest frame pushed into the window: what the state reports about where it came from."""

    seq: int
    t_capture_ns: int
    t_features_ns: int
    t_send_ns: int
    t_receive_ns: int


class StreamState:
    def __init__(self, stream_id: str, window: int, feature_dim: int, fade: FadeConfig,
                 feature_range: FeatureRange | None = None, feature_kind: str | None = None,
                 kind_maps: dict | None = None):
        self.stream_id = stream_id
        # The network's own kind (None: accept any frame of the right size, the old behaviour) and
        # maps from other kinds into it; frames of any other kind are counted and read as no face.
        self.feature_kind = feature_kind
        self.kind_maps = dict(kind_maps or {})
        self.unsupported_kind = 0
        self.unsupported_kinds: set[str] = set()
        # The newest accepted expr52 frame's effective weights (None after a frame of the network's
        # own kind): the eyes are read from these names, not from what the kind map makes of them.
        self.last_expr52: np.ndarray | None = None
        self.fade = fade
        self.feature_range = feature_range
        self.clamped = 0  # frames with values clamped into the avatar's range
        self.rejected = 0  # frames dropped as far outside it
        self.window = np.zeros((window, feature_dim), np.float32)  # oldest first
        self.filled = False
        self.version = 0  # bumps whenever the window changes
        self.presence = 0.0
        self.face_lost = False
        self.ended = False
        self.last_receive_ns = -1  # newest frame consumed (any kind)
        self.last_good: GoodFrame | None = None
        self.last_step_ns: int | None = None
        self.pose = HeadPose()

    # -- input -------------------------------------------------------------------------------
    def consume(self, frame: FeatureFrame, t_receive_ns: int) -> None:
        self.last_receive_ns = max(self.last_receive_ns, t_receive_ns)
        if frame.end_of_stream:
            self.ended = True
            return
        self.ended = False
        if frame.face_lost:
            self.face_lost = True
            return
        label = frame.kind.label if hasattr(frame.kind, "label") else str(frame.kind)
        if self.feature_kind is not None and label != self.feature_kind:
            kmap = self.kind_maps.get(label)
            if kmap is None:
                self.unsupported_kind += 1
                if label not in self.unsupported_kinds:
                    self.unsupported_kinds.add(label)
                    log.warning("stream %r sends %s features; its avatar accepts %s: frames shown as no face",
                                self.stream_id, label, ", ".join([self.feature_kind, *sorted(self.kind_maps)]))
                self.face_lost = True
                return
            feats = kmap.apply(frame.features)
            expr52 = label == "expr52"
        else:
            feats = np.asarray(frame.features, dtype=np.float32).reshape(-1)
            expr52 = False
        if feats.shape[0] != self.window.shape[1] or not np.isfinite(feats).all():
            self.face_lost = True  # wrong kind or corrupt: treat like no face rather than crash
            return
        if self.feature_range is not None:
            feats, clamped = self.feature_range.check(feats)
            if feats is None:
                self.rejected += 1
                self.face_lost = True
                return
            self.clamped += int(clamped)
        self.face_lost = False
        last_capture = self.last_good.t_capture_ns if self.last_good is not None else 0
        gap = self.last_good is None or (frame.t_capture_ns - last_capture) > self.fade.reset_after_s * 1e9 \
            or frame.t_capture_ns < last_capture  # publisher restarted
        if gap or not self.filled:
            self.window[:] = feats
            self.filled = True
        else:
            self.window[:-1] = self.window[1:]
            self.window[-1] = feats
        self.version += 1
        self.pose = frame.pose
        if expr52:
            from inference.features.expr52 import effective_weights

            w = effective_weights(np.asarray(frame.features, np.float32))
            self.last_expr52 = w if np.isfinite(w).all() else None
        else:
            self.last_expr52 = None
        self.last_good = GoodFrame(frame.seq, frame.t_capture_ns, frame.t_features_ns, frame.t_send_ns, t_receive_ns)

    # -- per step ------------------------------------------------------------------------------
    def status(self, now_ns: int, source_lost: bool = False) -> str:
        if not self.filled:
            return WAITING
        silent = now_ns - self.last_receive_ns > self.fade.hold_s * 1e9
        if source_lost or self.ended or silent:
            return STREAM_LOST
        return FACE_LOST if self.face_lost else TRACKING

    def update_presence(self, status: str, now_ns: int) -> float:
        dt = 0.0 if self.last_step_ns is None else max(0.0, (now_ns - self.last_step_ns) / 1e9)
        self.last_step_ns = now_ns
        if status == TRACKING:
            self.presence = 1.0 - (1.0 - self.presence) * math.exp(-dt / self.fade.fade_in_s)
            if 1.0 - self.presence < 1e-4:
                self.presence = 1.0
        else:
            self.presence *= math.exp(-dt / self.fade.fade_out_s)
            if self.presence < 1e-4:
                self.presence = 0.0
        return self.presence
