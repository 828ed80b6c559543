"""Files the user keeps (recordings, avatars, scenes, calibrations, results) are written atomically.

    atomic_write_text(path, text)          # or _bytes / _json, or atomic_write(path, fn)

The data goes to a temporary file beside the target, is flushed and fsynced, and is renamed over
the target: a reader sees the old file or the new one, never half of one, and a crash mid-write
loses nothing that was there before. Details that each copy of this pattern used to get
differently:

* **Unique temporary names** (`.NAME.<pid>.<random>.tmp`): two writers of one file never write
  into the same temporary file; the last rename wins whole.
* **The file's mode is kept.** `mkstemp` creates 0600; an existing target keeps its own mode, a
  new one gets 0666 minus the umask, as `open()` would have given it.
* **Leftovers are swept.** A writer killed with SIGKILL cannot remove its temporary file; the next
  write of the same target removes temporary files whose writing process no longer exists.
* The directory is fsynced after the rename, so the rename itself survives a power cut.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, BinaryIO, Callable


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    """Make a rename or a new entry in `path` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(str(path), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_pattern(name: str) -> re.Pattern:
    return re.compile(r"^\." + re.escape(name) + r"\.(\d+)\.[0-9a-f]+\.tmp$")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (a writer that may still finish its temporary)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temporaries(path: Path) -> int:
    """Remove temporary files of `path` left by writers that no longer run; returns how many."""
    path = Path(path)
    pattern = _temp_pattern(path.name)
    removed = 0
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return 0
    for entry in entries:
        m = pattern.match(entry.name)
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
                removed += 1
            except OSError:
                pass
    return removed


def temporary_path(path: Path) -> Path:
    """A unique temporary name beside `path` that `sweep_stale_temporaries` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")


def atomic_write(path: Path, write: Callable[[BinaryIO], Any], *, mode: int | None = None) -> Path:
    """Write `path` atomically with `write(f)` on a binary file object; returns `path`.

    `mode`: the file's permission bits; default: the existing file's, else 0666 & ~umask."""
    path = Path(path)
    tmp = prepare_temporary(path)
    fd = os.open(str(tmp), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        return commit_temporary(tmp, path, mode=mode)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def prepare_temporary(path: Path) -> Path:
    """For writers that need a file name of their own (a video muxer): the parent made, stale
    temporaries swept, and a unique temporary name beside `path` to write, then `commit_temporary`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(path)
    return temporary_path(path)


def commit_temporary(tmp: Path, path: Path, *, mode: int | None = None) -> Path:
    """fsync the finished temporary file `tmp`, give it `path`'s mode (or 0666 & ~umask for a new
    file) and rename it over `path`; returns `path`. On failure `tmp` is left for the caller."""
    path = Path(path)
    if mode is None:
        try:
            mode = path.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
    fd = os.open(str(tmp), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: Path, data: bytes, *, mode: int | None = None) -> Path:
    return atomic_write(path, lambda f: f.write(data), mode=mode)


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, data: Any, *, indent: int | None = 2, mode: int | None = None, **dumps) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=indent, **dumps), mode=mode)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "commit_temporary",
           "fsync_dir", "pid_alive", "prepare_temporary", "sha256_file", "sweep_stale_temporaries", "temporary_path"]
