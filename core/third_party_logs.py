"""Third-party log noise, silenced where it starts; Headcast's own warnings stay.

What `headcast capture` printed on the sample clip before this (MediaPipe 0.10.14, protobuf 4.25):

    INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    W0000 00:00:… inference_feedback_manager.cc:114] Feedback manager requires a model with a single signature …
    …/google/protobuf/symbol_database.py:55: UserWarning: SymbolDatabase.GetPrototype() is deprecated …

None of it is something a user can act on. Measured here: `GLOG_minloglevel`, `TF_CPP_MIN_LOG_LEVEL`
and absl's flags read from the environment change none of the first three lines — MediaPipe's
wheel logs through absl's C++ logging, which has no environment switch, and TensorFlow Lite's
minimal logger writes "INFO: …" straight to stderr. So the native lines are filtered at the file
descriptor while the MediaPipe graph starts (its models load on graph threads shortly after the
graph is made): `NativeStderrFilter` points fd 2 at a pipe whose reader drops exactly those line
shapes and passes everything else through unchanged, in order. The Python warning gets a warnings filter.
The environment variables are still set, for libraries that do read them.

`headcast -v` sets HEADCAST_THIRD_PARTY_LOGS=show (inherited by the nodes it starts), and then
nothing is filtered.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import warnings
from typing import Iterator, Sequence

ENV_SWITCH = "HEADCAST_THIRD_PARTY_LOGS"

# Whole lines (without the newline) that are dropped: absl/glog INFO and WARNING lines (errors and
# fatal ones pass), absl's pre-initialisation notice, TensorFlow Lite's INFO lines.
NATIVE_NOISE = (
    re.compile(rb"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [\w./+-]+:\d+\] "),
    re.compile(rb"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(rb"^INFO: "),
)
PYTHON_NOISE = (
    ("ignore", r"SymbolDatabase\.GetPrototype\(\) is deprecated", UserWarning),
)
NATIVE_ENV = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def third_party_logs_shown() -> bool:
    return os.environ.get(ENV_SWITCH, "").lower() == "show"


def show_third_party_logs() -> None:
    """What `headcast -v` does: leave every library's output alone, here and in child processes."""
    os.environ[ENV_SWITCH] = "show"


def quiet_python_noise() -> None:
    """Warnings filters and environment defaults; call before importing MediaPipe. Idempotent."""
    if third_party_logs_shown():
        return
    for key, value in NATIVE_ENV.items():
        os.environ.setdefault(key, value)
    for action, message, category in PYTHON_NOISE:
        warnings.filterwarnings(action, message=message, category=category)


def _pump(read_fd: int, write_fd: int, patterns: Sequence[re.Pattern]) -> None:
    buffer = b""
    with os.fdopen(read_fd, "rb", buffering=0) as source:
        while True:
            chunk = source.read(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if not any(p.search(line) for p in patterns):
                    os.write(write_fd, line + b"\n")
    if buffer and not any(p.search(buffer) for p in patterns):
        os.write(write_fd, buffer)


class _Fd2Filter:
    """The one redirection of file descriptor 2 (there is one fd 2 per process, so there is one of
    these: overlapping users share it through a count instead of stacking redirections)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: int | None = None
        self._reader: threading.Thread | None = None

    def acquire(self, patterns: Sequence[re.Pattern]) -> bool:
        with self._lock:
            if self._users == 0:
                try:
                    sys.stderr.flush()
                    saved = os.dup(2)
                except (OSError, ValueError):
                    return False
                read_fd, write_fd = os.pipe()
                os.dup2(write_fd, 2)
                os.close(write_fd)
                self._saved = saved
                self._reader = threading.Thread(target=_pump, args=(read_fd, saved, tuple(patterns)),
                                                name="headcast-stderr-filter", daemon=True)
                self._reader.start()
            self._users += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            if self._users > 0 or self._saved is None:
                return
            try:
                sys.stderr.flush()
            except (OSError, ValueError):
                pass
            os.dup2(self._saved, 2)    # closes the pipe's last write end: the reader drains and ends
            self._reader.join(timeout=5)
            os.close(self._saved)
            self._saved = None
            self._reader = None


_FD2 = _Fd2Filter()


class NativeStderrFilter:
    """While started, lines written to file descriptor 2 — by any thread, C++ or Python — that match
    NATIVE_NOISE are dropped; the rest reach the real stderr unchanged and in order. A no-op when
    third-party logs are shown or fd 2 cannot be duplicated. `stop` is idempotent.

    MediaPipe loads its models on graph threads *after* the graph object is made, at a moment the
    caller does not see, so the trackers keep the filter from construction until their first
    frame has come back (by then every model is open)."""

    def __init__(self) -> None:
        self._held = False

    def start(self) -> "NativeStderrFilter":
        if not self._held and not third_party_logs_shown():
            self._held = _FD2.acquire(NATIVE_NOISE)
        return self

    def stop(self) -> None:
        if self._held:
            self._held = False
            _FD2.release()

    @property
    def active(self) -> bool:
        return self._held


@contextlib.contextmanager
def native_stderr_filtered() -> Iterator[None]:
    """`NativeStderrFilter` for the duration of a block."""
    f = NativeStderrFilter().start()
    try:
        yield
    finally:
        f.stop()


__all__ = ["ENV_SWITCH", "NATIVE_NOISE", "NativeStderrFilter", "native_stderr_filtered", "quiet_python_noise", "show_third_party_logs",
           "third_party_logs_shown"]
