"""The capture node: frame source → face tracker → features → FeatureFrame → ZeroMQ publisher.

Every source frame becomes exactly one message: frames without a face go out flagged FACE_LOST
with zero features (the render node must know the face is gone, not guess from silence), and a
final END_OF_STREAM frame tells the receiver the stream ended on purpose. Timestamps are taken on
this host's monotonic clock: t_capture when the frame exists in memory, t_features when its
features are ready, t_send just before the socket takes it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from calibration.clock_service import ClockClient
from core.errors import HeadcastError
from calibration.neutral import NeutralFace
from calibration.online_neutral import OnlineNeutralConfig
from inference.features.face_tracker import FaceTracker, TrackerConfig
from inference.features.mp478 import FEATURE_GAIN, head_pose
from streaming import protocol
from streaming.protocol import FEATURE_SHAPES, FeatureFrame, FeatureKind, Flags, HeadPose
from streaming.publisher import Publisher
from streaming.sockets import CurveClient, CurveServer

from .driver_features import DriverConfig, DriverFeatures
from .recording import RecordingWriter
from .sources import SourceConfig, open_source
from .stats import CaptureStats

log = logging.getLogger(__name__)


class PeerRefusedError(HeadcastError, RuntimeError):
    """The render node refused this capture node's connection (CURVE mismatch, key not allowed)."""


@dataclass(frozen=True)
class CaptureConfig:
    source: SourceConfig
    endpoint: str
    stream_id: str
    bind: bool = False  # normally the render node binds and capture nodes connect
    insecure: bool = False
    curve_client: CurveClient | None = None
    curve_server: CurveServer | None = None
    feature: FeatureKind = FeatureKind.MP478
    deca_checkpoint: Path | None = None
    neutral_file: Path | None = None  # None: estimate the neutral online (mp478 only)
    record_file: Path | None = None
    feature_gain: float = FEATURE_GAIN
    # PUB drops messages until the SUB's subscription has arrived; this grace period (overlapping
    # the tracker's start-up) keeps the first frames from vanishing.
    connect_grace_s: float = 0.3
    # Render node's clock service: the node keeps pinging it so the render side learns this host's
    # clock offset and drift in-band (None: no clock calibration).
    clock_endpoint: str | None = None
    online_neutral: OnlineNeutralConfig = field(default_factory=OnlineNeutralConfig)
    # Read the render node's optical frame counter off every frame (bench glass), after the frame
    # has been sent, so it never delays the stream.
    detect_optical_marker: bool = False
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    # Write the neutral in use and the driver's learned expression range here when the run ends
    # (atomically; reuse it with neutral_file).
    save_neutral: Path | None = None
    # Ecosystem outputs (capture/interop: Live Link Face, VMC, Unified-Expressions OSC): each gets
    # the frame's expr52 weights (× confidence) and head pose after the frame has been sent.
    emitters: tuple = ()


class CaptureNode:
    def __init__(self, config: CaptureConfig):
        protocol.validate_stream_id(config.stream_id)
        if config.feature not in (FeatureKind.MP478, FeatureKind.DECA2048, FeatureKind.EXPR52):
            raise ValueError(f"unsupported feature kind {config.feature!r}")
        if config.feature is FeatureKind.DECA2048 and config.deca_checkpoint is None:
            raise ValueError("feature kind deca2048 needs a DECA checkpoint (--deca-checkpoint deca_model.tar)")
        self.config = config
        self.stats = CaptureStats()
        self._stop = threading.Event()
        self._seq = 0
        self._marker = None
        self._settled_logged = False

    def stop(self) -> None:
        """Asks a running ``run`` to finish after the current frame (thread-safe)."""
        self._stop.set()

    def run(self, on_progress: Callable[[CaptureStats], None] | None = None, progress_every_s: float = 5.0) -> CaptureStats:
        """Streams until the source ends or ``stop`` is called; ``on_progress`` gets the running
        statistics every ``progress_every_s`` (live sessions print them while they run)."""
        cfg = self.config
        # Everything that can fail on bad input (source, neutral file, checkpoint) fails before any
        # socket exists, so a typo never leaves a half-started node behind.
        source = open_source(cfg.source)
        self._source_fps = getattr(source, "fps", None)
        publisher = recorder = tracker = clock = None
        try:
            neutral = NeutralFace.load(cfg.neutral_file) if cfg.neutral_file else None
            deca = None
            if cfg.feature is FeatureKind.DECA2048:
                from inference.features.deca import DecaConfig, DecaExtractor  # torch only when asked for

                deca = DecaExtractor(DecaConfig(Path(cfg.deca_checkpoint)))
            # The driver pipeline (online neutral, per-region smoothing, per-driver range): one object
            # shared with `eval transfer`, so what is measured is what is sent.
            extractor = DriverFeatures(DriverConfig(gain=cfg.feature_gain, online_neutral=cfg.online_neutral),
                                       neutral, source=source.description)
            online = extractor.online
            if online is not None and cfg.feature in (FeatureKind.MP478, FeatureKind.EXPR52):
                log.warning("no neutral file: estimating the driver's neutral face online from low-activity "
                            "frames (frames flagged CALIBRATING until it settles; keep a relaxed face)")
            t_open = time.monotonic()
            publisher = Publisher(cfg.endpoint, bind=cfg.bind, curve_client=cfg.curve_client,
                                  curve_server=cfg.curve_server, insecure=cfg.insecure)
            recorder = RecordingWriter(cfg.record_file) if cfg.record_file else None
            if cfg.clock_endpoint:
                clock = ClockClient(cfg.clock_endpoint, cfg.stream_id, curve_client=cfg.curve_client)
                clock.start_background(period_s=0.25)
            tracker = FaceTracker(cfg.tracker)
            if cfg.detect_optical_marker:
                from media.optical_marker import MarkerDetector

                self._marker = MarkerDetector()
            grace = cfg.connect_grace_s - (time.monotonic() - t_open)
            if grace > 0:
                time.sleep(grace)
            self._check_peer(publisher)
            log.info("capturing from %s → %s as stream %r (%s)", source.description, cfg.endpoint,
                     cfg.stream_id, cfg.feature.label)
            t_start = time.perf_counter()
            next_report = t_start + progress_every_s
            try:
                for frame in source:
                    self._process(frame, tracker, extractor, online, deca, publisher, recorder)
                    if self._stop.is_set():
                        break
                    if self.stats.frames % 16 == 0:
                        self._check_peer(publisher)
                    if on_progress is not None and time.perf_counter() >= next_report:
                        self.stats.wall_s = time.perf_counter() - t_start
                        self.stats.source_skipped = source.skipped
                        on_progress(self.stats)
                        next_report += progress_every_s
            finally:
                self.stats.wall_s = time.perf_counter() - t_start
                self.stats.source_skipped = source.skipped
                self.stats.source_missing_frames = source.missing_frames
                if publisher is not None:
                    self._send_end_of_stream(publisher, recorder)
                if cfg.save_neutral is not None:
                    calib = extractor.calibration()
                    if calib is None:
                        log.warning("no face seen: nothing to save to %s", cfg.save_neutral)
                    else:
                        calib.save(cfg.save_neutral)
                        log.info("saved the neutral and expression range %s to %s", calib.ranges, cfg.save_neutral)
            self._check_peer(publisher, at_end=True)
        finally:
            for closer in (clock, tracker, recorder, publisher, source, *cfg.emitters):
                if closer is not None:
                    try:
                        closer.close()
                    except Exception:  # closing must not hide the error that got us here
                        log.exception("error while closing %s", type(closer).__name__)
        return self.stats

    def _check_peer(self, publisher: Publisher, at_end: bool = False) -> None:
        """Fails as soon as the render node has refused the handshake (and never accepted one); at
        the end, warns when no render node ever accepted the connection."""
        mon = publisher.handshake
        if mon is None:
            return
        if mon.refused:
            mon.settle()
            raise PeerRefusedError(f"{self.config.endpoint} refused this capture node: {mon.failure}; "
                                   f"{self.stats.sent} frames were sent into the void")
        if at_end and not mon.succeeded:
            log.warning("no render node accepted the connection to %s: none of the %d frames was delivered",
                        self.config.endpoint, self.stats.sent)
        self.stats.peer_connected = bool(mon.succeeded)

    def _frame_time_s(self, frame) -> float:
        """The time the driver pipeline filters and calibrates on: the capture clock for cameras
        and paced files, the media time for files read as fast as possible (otherwise a file
        decoded at 200 fps would 'settle' its neutral in a sixth of the video's second)."""
        src = self.config.source
        fps = getattr(self, "_source_fps", None)
        if src.realtime or not fps or src.spec.isdigit():
            return frame.t_capture_ns / 1e9
        return frame.index / fps

    # -- one frame -------------------------------------------------------------------------------
    def _process(self, frame, tracker, extractor, online, deca, publisher, recorder) -> None:
        cfg, st = self.config, self.stats
        st.frames += 1
        st.add("decode", frame.decode_ms)
        t0 = time.perf_counter_ns()
        obs = tracker.track(frame.image)
        t1 = time.perf_counter_ns()
        st.add("landmarks", (t1 - t0) / 1e6)
        flags = Flags.NONE
        shape = FEATURE_SHAPES[cfg.feature]
        result = expr = None
        if obs is not None:
            try:
                result = extractor.process(obs.landmarks_px, self._frame_time_s(frame))
            except ValueError:  # degenerate landmarks (eyes on one point): no usable face
                result = None
                st.degenerate += 1
        if obs is None or result is None:
            extractor.face_lost()
            st.face_lost += 1
            feats = np.zeros(shape, dtype=np.float32)
            pose, confidence, flags = HeadPose(), 0.0, Flags.FACE_LOST
        else:
            st.face_frames += 1
            feats = result.features
            if online is not None:
                flags |= Flags.NEUTRAL_ESTIMATED
                if not result.calibrating and not self._settled_logged:
                    self._settled_logged = True
                    log.warning("driver neutral estimated online (most relaxed stretch of the last seconds); "
                                "it improves when a more relaxed face is seen, never towards a held expression "
                                "(use headcast calibrate neutral for a deliberate one)")
                if result.calibrating:
                    flags |= Flags.CALIBRATING
                    st.calibrating_frames += 1
            if deca is not None:
                feats = deca.extract(frame.image, obs.landmarks_px)
            if cfg.feature is FeatureKind.EXPR52 or cfg.emitters:
                expr = extractor.expr52(result)
                if cfg.feature is FeatureKind.EXPR52:
                    feats = expr
            pose, confidence = head_pose(result.pose), 1.0
        t2 = time.perf_counter_ns()
        st.add("features", (t2 - t1) / 1e6)
        out = FeatureFrame(
            stream_id=cfg.stream_id, seq=self._seq, kind=cfg.feature, features=feats,
            t_capture_ns=frame.t_capture_ns, t_features_ns=time.monotonic_ns(),
            pose=pose, confidence=confidence, flags=flags,
        )
        t_send = self._send(out, publisher, recorder)
        st.add("send", (time.perf_counter_ns() - t2) / 1e6)
        if cfg.emitters:
            self._emit(expr, pose, frame.t_capture_ns)
        st.capture_to_sent_ms.append((t_send - frame.t_capture_ns) / 1e6)
        if self._marker is not None:
            marker = self._marker.detect(frame.image)
            if marker is not None:
                st.optical_markers.append((out.seq, frame.t_capture_ns, marker))

    def _emit(self, expr, pose, t_capture_ns: int) -> None:
        from inference.features.expr52 import effective_weights

        weights = np.zeros(52, np.float32) if expr is None else effective_weights(expr)
        for emitter in self.config.emitters:
            try:
                emitter.emit(weights, pose, t_capture_ns)
            except Exception:  # an output that breaks must not stop the stream
                self.stats.emit_errors = getattr(self.stats, "emit_errors", 0) + 1
                log.exception("emitter %s failed", type(emitter).__name__)

    def _send(self, frame: FeatureFrame, publisher: Publisher, recorder: RecordingWriter | None) -> int:
        t_send = time.monotonic_ns()
        parts = protocol.encode(frame, t_send)
        if publisher.send_parts(parts):
            self.stats.sent += 1
        else:
            self.stats.send_dropped += 1
        if recorder is not None:
            recorder.write(t_send, parts)  # the exact bytes that went out, even if the peer dropped them
        self._seq += 1
        return t_send

    def _send_end_of_stream(self, publisher: Publisher, recorder: RecordingWriter | None) -> None:
        now = time.monotonic_ns()
        eos = FeatureFrame(
            stream_id=self.config.stream_id, seq=self._seq, kind=FeatureKind.NONE,
            features=np.zeros((0, 0), dtype=np.float32), t_capture_ns=now, t_features_ns=now,
            confidence=0.0, flags=Flags.END_OF_STREAM,
        )
        try:
            self._send(eos, publisher, recorder)
        except Exception:
            log.exception("could not send the end-of-stream frame")
