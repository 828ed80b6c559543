"""Recordings: crash safety (a SIGKILLed recorder leaves a readable file) and timed replay."""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from capture.node import CaptureConfig, CaptureNode
from capture.recording import MAGIC, RecordingError, RecordingReader, RecordingWriter
from capture.replay import ReplayConfig, replay
from capture.sources import SourceConfig
from streaming import protocol
from tools import cli
from tools.samples import sample_path
from streaming.receiver import Receiver, ReceiverConfig

REPO = Path(__file__).resolve().parents[1]
MAN = "single_face.mp4"


def test_roundtrip_and_torn_tail(tmp_path):
    path = tmp_path / "r.hcrec"
    with RecordingWriter(path) as w:
        for i in range(5):
            w.write(1000 + i, [b"topic", bytes([i]) * (10 + i)])
    recs = RecordingReader(path).read_all()
    assert [r.t_send_ns for r in recs] == [1000, 1001, 1002, 1003, 1004]
    assert recs[3].parts == (b"topic", bytes([3]) * 13)
    full = path.read_bytes()
    # a writer killed mid-record: every complete record reads, the torn tail is reported
    for cut in (1, 7, 20):
        torn = tmp_path / f"torn{cut}.hcrec"
        torn.write_bytes(full[:-cut])
        reader = RecordingReader(torn)
        assert len(reader.read_all()) == 4
        assert reader.truncated_tail_bytes > 0 and reader.tail_reason
    # a flipped byte inside a record stops reading there (CRC), not with garbage
    bad = bytearray(full)
    bad[-3] ^= 0xFF
    (tmp_path / "crc.hcrec").write_bytes(bytes(bad))
    reader = RecordingReader(tmp_path / "crc.hcrec")
    assert len(reader.read_all()) == 4 and reader.tail_reason == "CRC mismatch"


def test_not_a_recording_is_refused(tmp_path):
    (tmp_path / "x").write_bytes(b"hello world, not a recording")
    with pytest.raises(RecordingError, match="bad magic"):
        RecordingReader(tmp_path / "x")
    (tmp_path / "short").write_bytes(MAGIC[:4])
    with pytest.raises(RecordingError, match="too short"):
        RecordingReader(tmp_path / "short")
    with pytest.raises(RecordingError, match="does not exist"):
        RecordingReader(tmp_path / "missing")
    rc = cli.main(["replay", str(tmp_path / "x"), "--connect", "tcp://127.0.0.1:9"])
    assert rc == 2


def test_sigkilled_recorder_leaves_a_readable_file(tmp_path):
    """A capture node killed mid-stream: its recording reads back, the receiver marks the stream
    lost and keeps serving."""
    rec = tmp_path / "killed.hcrec"
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64, lost_after_s=0.3)) as rx:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "capture", "--source", str(sample_path(MAN)), "--realtime", "--loop",
             "--connect", rx.bound_endpoint, "--stream", "rec", "--record", str(rec)],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if rec.exists() and rec.stat().st_size > 20 * 5800:
                    break
                time.sleep(0.05)
            else:
                pytest.fail("recorder never wrote 20 frames")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL
        assert rx.wait_for(lambda r: r.snapshot()["rec"].lost, 3)
        assert rx.alive and rx.error is None and not rx.snapshot()["rec"].end_of_stream
    reader = RecordingReader(rec)
    records = reader.read_all()
    assert len(records) >= 20
    frames = [protocol.decode(list(r.parts)) for r in records]  # every complete record is a valid frame
    assert [f.seq for f in frames] == list(range(len(frames)))
    assert all(f.stream_id == "rec" and f.t_send_ns == r.t_send_ns for f, r in zip(frames, records))
    assert not any(f.end_of_stream for f in frames)  # killed: no goodbye, and the file is still fine


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """20 frames of the man recorded at the clip's real rate (30 fps)."""
    path = tmp_path_factory.mktemp("rec") / "man.hcrec"
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        CaptureNode(CaptureConfig(SourceConfig(str(sample_path(MAN)), realtime=True, max_frames=20),
                                  rx.bound_endpoint, "man", record_file=path)).run()
    return path


def test_replay_keeps_original_timing_and_bytes(recording):
    records = RecordingReader(recording).read_all()
    assert len(records) == 21  # 20 frames + end of stream
    sent_ms = (np.array([r.t_send_ns for r in records]) - records[0].t_send_ns) / 1e6
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        result = replay(ReplayConfig(recording, rx.bound_endpoint, realtime=True))
        assert rx.wait_for(lambda r: "man" in r.snapshot() and r.snapshot()["man"].end_of_stream, 5)
        got = rx.window_received("man", 64)
    assert result.sent == 21 and len(got) == 21
    recv_ms = (np.array([g.t_receive_ns for g in got]) - got[0].t_receive_ns) / 1e6
    assert sent_ms[-1] > 500  # 20 frames at 30 fps
    assert np.abs(recv_ms - sent_ms).max() < 50, np.abs(recv_ms - sent_ms).max()  # no drift, no burst
    assert np.median(np.abs(np.diff(recv_ms) - np.diff(sent_ms))) < 3
    # exact bytes by default: the receiver sees the recorded frames, timestamps included
    for g, r in zip(got, records):
        assert protocol.encode(g.frame) == list(r.parts)


def test_replay_fast_and_looped(recording):
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        t0 = time.monotonic()
        assert cli.main(["replay", str(recording), "--connect", rx.bound_endpoint]) == 0
        assert time.monotonic() - t0 < 0.5 + 0.4  # far quicker than the 0.63 s it took to record + grace
        assert rx.wait_for(lambda r: r.snapshot().get("man") and r.snapshot()["man"].received == 21, 5)
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        before = time.monotonic_ns()
        result = replay(ReplayConfig(recording, rx.bound_endpoint, loop=True, max_passes=3, restamp=True))
        assert result.passes == 3 and result.sent == 60  # end-of-stream frames dropped while looping
        assert rx.wait_for(lambda r: r.snapshot().get("man") and r.snapshot()["man"].received == 60, 5)
        st = rx.snapshot()["man"]
        frames = rx.window("man", 64)
    assert st.stale == 0 and st.dropped == 0 and st.last_seq == 59
    assert all(f.t_send_ns >= before for f in frames)  # restamped into this run's clock


def test_replay_skips_a_torn_tail(recording, tmp_path, capsys):
    torn = tmp_path / "torn.hcrec"
    torn.write_bytes(recording.read_bytes()[:-100])
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=64)) as rx:
        assert cli.main(["replay", str(torn), "--connect", rx.bound_endpoint]) == 0
        assert rx.wait_for(lambda r: r.snapshot().get("man") and r.snapshot()["man"].received == 20, 5)
    assert "truncated tail" in capsys.readouterr().err
