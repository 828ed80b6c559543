"""Headcast prints its own lines only: MediaPipe / TensorFlow Lite / absl / protobuf start-up noise
is filtered where it starts (core/third_party_logs), `-v` brings it back."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap

from tools.samples import sample_path

HEADCAST = [sys.executable, "-m", "tools.cli"]
OURS = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) (capture|inference|calibration|streaming|core|media|tools|"
                  r"xr_runtime)[\w.]*: ")


def _capture(*extra: str) -> list[str]:
    r = subprocess.run(HEADCAST + [*extra, "capture", "--source", str(sample_path("single_face.mp4")), "--connect",
                                   "tcp://127.0.0.1:9", "--stream", "quiet", "--clock", "off"],
                       capture_output=True, text=True, timeout=240)
    assert r.returncode == 0, r.stderr
    return [line for line in (r.stdout + r.stderr).splitlines() if line.strip()]


def test_capture_on_the_sample_clip_prints_only_headcasts_own_lines():
    lines = _capture()
    assert lines, "the capture node says nothing at all (its neutral-face warnings are expected)"
    foreign = [line for line in lines if not OURS.match(line)]
    assert not foreign, foreign
    assert any("neutral" in line for line in lines)          # our own warnings stay


def test_verbose_brings_the_third_party_lines_back():
    lines = _capture("-v")
    text = "\n".join(lines)
    # The same run with -v shows what the filter removes (so the test above can fail).
    assert "XNNPACK" in text or "Feedback manager" in text, text[-2000:]
    assert any(line.startswith("INFO capture.node:") for line in lines)


def test_the_filter_drops_only_the_noise_and_keeps_order():
    script = textwrap.dedent(r"""
        import os, sys
        from core.third_party_logs import NativeStderrFilter, native_stderr_filtered
        outer = NativeStderrFilter().start()
        os.write(2, b"first\n")
        os.write(2, b"W0000 00:00:1796193137.514657   23838 inference_feedback_manager.cc:114] noise\n")
        with native_stderr_filtered():          # overlapping users share the one redirection of fd 2
            os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
            print("second", file=sys.stderr, flush=True)
            os.write(2, b"E0000 00:00:1796193137.514657   23838 x.cc:1] a third-party error stays\n")
        outer.stop()
        outer.stop()
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"last\n")
    """)
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    # After stop, nothing is filtered any more: the absl notice passes.
    assert lines == ["first", "second", "E0000 00:00:1796193137.514657   23838 x.cc:1] a third-party error stays",
                     "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
                     "last"], lines
