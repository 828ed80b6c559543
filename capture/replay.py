"""Republishes a recording (see ``recording.py``) to a render node, optionally with its timing.

By default the recorded bytes go out unchanged, so a render-side test sees exactly what the
capture node sent. ``restamp`` shifts every timestamp so the stream looks live (t_send ≈ now), and
looping continues sequence numbers across passes: a receiver treats a sequence that goes back
as stale, so a plain byte loop would be discarded after the first pass.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from streaming import protocol
from streaming.publisher import DEFAULT_HWM, Publisher
from streaming.sockets import CurveClient

from .recording import RecordingError, RecordingReader

log = logging.getLogger(__name__)

FAST_REPLAY_HWM = 1024


@dataclass(frozen=True)
class ReplayConfig:
    path: Path
    endpoint: str
    realtime: bool = False  # keep the recorded inter-message timing
    loop: bool = False
    max_passes: int | None = None  # with loop: stop after this many passes (None: forever)
    restamp: bool = False
    curve_client: CurveClient | None = None
    connect_grace_s: float = 0.3  # let the SUB's subscription arrive before the first message


@dataclass
class ReplayResult:
    sent: int = 0
    dropped: int = 0
    passes: int = 0
    undecodable: int = 0  # records skipped when restamping because they are not protocol frames
    truncated_tail_bytes: int = 0
    tail_reason: str = ""
    damaged: list = field(default_factory=list)  # recording.DamagedRegion in the middle, skipped


def replay(config: ReplayConfig, stop: threading.Event | None = None) -> ReplayResult:
    reader = RecordingReader(config.path)
    records = reader.read_all()
    middle = reader.damaged[:-1] if reader.truncated_tail_bytes else list(reader.damaged)  # the tail is the last
    result = ReplayResult(truncated_tail_bytes=reader.truncated_tail_bytes, tail_reason=reader.tail_reason,
                          damaged=middle)
    for d in middle:
        log.warning("%s: %d damaged bytes at offset %d (%s) skipped; reading resumed at the next valid record",
                    config.path, d.length, d.offset, d.reason)
    if reader.truncated_tail_bytes:
        log.warning("%s: %d-byte truncated tail (%s) skipped; %d complete records", config.path,
                    reader.truncated_tail_bytes, reader.tail_reason, len(records))
    if not records:
        raise RecordingError(f"{config.path} holds no complete records")
    stop = stop or threading.Event()
    t_first = records[0].t_send_ns
    span_ns = records[-1].t_send_ns - t_first
    seq_span = _seq_span(records, skip_eos=config.loop)
    period_ns = max(span_ns + _median_gap(records), 1)  # one pass, plus one frame gap before the next
    # Paced replay behaves like a live node (small HWM, stale frames dropped). Unpaced replay is a
    # burst by design; a deeper queue lets it deliver every frame instead of the first few.
    hwm = DEFAULT_HWM if config.realtime else FAST_REPLAY_HWM
    with Publisher(config.endpoint, curve_client=config.curve_client, hwm=hwm) as pub:
        time.sleep(config.connect_grace_s)
        t0 = time.monotonic_ns()
        pass_no = 0
        while not stop.is_set():
            for rec in records:
                if stop.is_set():
                    break
                rel = rec.t_send_ns - t_first + pass_no * period_ns
                if config.realtime:
                    delay = t0 + rel - time.monotonic_ns()
                    if delay > 0:
                        time.sleep(delay / 1e9)
                parts = list(rec.parts)
                if config.restamp:
                    parts = _restamp(parts, shift_ns=t0 + rel - rec.t_send_ns, seq_offset=pass_no * seq_span,
                                     drop_eos=config.loop, result=result)
                    if parts is None:
                        continue
                if pub.send_parts(parts):
                    result.sent += 1
                else:
                    result.dropped += 1
            pass_no += 1
            result.passes = pass_no
            if not config.loop or (config.max_passes is not None and pass_no >= config.max_passes):
                break
        time.sleep(0.05)  # linger: let the last messages leave before the socket closes
    return result


def _seq_span(records, skip_eos: bool) -> int:
    """Sequence numbers one pass uses, so the next pass continues without a gap."""
    top = 0
    for rec in records:
        try:
            frame = protocol.decode(list(rec.parts))
        except protocol.ProtocolError:
            continue
        if not (skip_eos and frame.end_of_stream):
            top = max(top, frame.seq)
    return top + 1


def _median_gap(records) -> int:
    if len(records) < 2:
        return 1
    gaps = sorted(b.t_send_ns - a.t_send_ns for a, b in zip(records, records[1:]))
    return max(gaps[len(gaps) // 2], 1)


def _restamp(parts, shift_ns: int, seq_offset: int, drop_eos: bool, result: ReplayResult):
    try:
        frame = protocol.decode(parts)
    except protocol.ProtocolError:
        result.undecodable += 1
        return None
    if drop_eos and frame.end_of_stream:
        return None  # a looping stream has not ended
    frame = replace(
        frame, seq=frame.seq + seq_offset,
        t_capture_ns=max(frame.t_capture_ns + shift_ns, 0),
        t_features_ns=max(frame.t_features_ns + shift_ns, 0),
    )
    return protocol.encode(frame, max(frame.t_send_ns + shift_ns, 0))
