"""A private Xvfb X server for tests that need an X display (GLFW windows, GLX contexts).

Xvfb picks a free display number itself (`-displayfd`) and writes it to a pipe, so parallel runs
and leftover lock files cannot collide. Skips only when no Xvfb binary exists.
"""
from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager

import pytest


@contextmanager
def xvfb_display(screen: str = "1024x768x24", timeout_s: float = 15.0):
    """Yields ':N' of a running Xvfb; stops it afterwards."""
    binary = shutil.which("Xvfb")
    if binary is None:
        pytest.skip("Xvfb is not installed here (apt-get install xvfb xauth; scripts/monado_env.sh installs it "
                    "in the Monado root)")
    read_fd, write_fd = os.pipe()
    log = tempfile.TemporaryFile()  # a file, not a pipe: a chatty server must never block on it
    server = subprocess.Popen([binary, "-displayfd", str(write_fd), "-screen", "0", screen, "-nolisten", "tcp"],
                              pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=log)
    os.close(write_fd)
    try:
        number = b""
        deadline = time.monotonic() + timeout_s
        while not number.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            assert remaining > 0, "Xvfb did not report its display number"
            ready, _, _ = select.select([read_fd], [], [], remaining)
            if ready:
                chunk = os.read(read_fd, 16)
                if not chunk:
                    server.wait(5)
                    log.seek(0)
                    raise AssertionError(f"Xvfb exited at start: {log.read().decode(errors='replace')[-500:]}")
                number += chunk
        yield f":{int(number)}"
    finally:
        os.close(read_fd)
        if server.poll() is None:
            server.terminate()
            try:
                server.wait(5)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        log.close()


@pytest.fixture
def xvfb(monkeypatch):
    """DISPLAY set to a private Xvfb for the test (WAYLAND_DISPLAY cleared)."""
    with xvfb_display() as display:
        monkeypatch.setenv("DISPLAY", display)
        monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
        yield display
