"""Avatar packages by sha256: one archive per package, verified before anything loads it.

    data = pack_package(Path("pkgs/alice"))              # deterministic bytes
    sha = package_sha256(data)
    store = PackageStore(Path("room/packages"), max_bytes=64 << 20)
    store.put(sha, data)                                 # verified, validated, stored atomically
    path = install_package(data, sha, Path("cache/room-packages"))   # a render node's side

The archive is a small framing of our own rather than tar (tar brings links, devices, absolute
paths and permission bits, each a way out of the directory): a magic line, a strict-JSON index of
``{name: size}`` naming only the package's four files, then their bytes in the index's (sorted)
order. Packing the same directory twice gives the same bytes, so the sha256 names the package.

Nothing unverified is loaded: the bytes must hash to the sha256 they were asked for, fit the size
limit, unpack to exactly the package's files, and pass `inference.avatar_package.load_package`
(schema, every file's sha256 against the manifest, weights' shapes, mesh) in a temporary directory
before it is renamed into place. A store entry written by a killed process is a hidden temporary
that the next write sweeps (core.atomic_files).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from pathlib import Path

from core.atomic_files import atomic_write_bytes, fsync_dir
from core.errors import HeadcastError
from core.strict_json import StrictJsonError, loads_strict

MAGIC = b"HCPKG1\n"
DEFAULT_MAX_BYTES = 64 << 20   # the default avatar's package is ~18 MB; the quick one ~1 MB
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")


class PackageStoreError(HeadcastError, ValueError):
    """An archive that is too large, does not hash to its name, or is not a valid avatar package."""


def _package_files() -> tuple[str, ...]:
    from inference.avatar_package import MANIFEST, PAYLOAD

    return tuple(sorted((MANIFEST, *PAYLOAD)))


def pack_package(path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> bytes:
    """The package directory as archive bytes (validated first: a broken package never travels)."""
    from inference.avatar_package import AvatarPackageError, load_package

    path = Path(path)
    try:
        load_package(path)
    except AvatarPackageError as exc:
        raise PackageStoreError(str(exc)) from None
    names = _package_files()
    sizes = {n: (path / n).stat().st_size for n in names}
    if sum(sizes.values()) > max_bytes:
        raise PackageStoreError(f"{path}: {sum(sizes.values())} bytes, over the room's limit of {max_bytes}")
    index = json.dumps(sizes, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return b"".join([MAGIC, index, b"\n", *((path / n).read_bytes() for n in names)])


def package_sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_archive(data: bytes, sha256: str, max_bytes: int = DEFAULT_MAX_BYTES) -> dict[str, memoryview]:
    """The archive's files (name → bytes) once its size, hash and framing are right."""
    if not isinstance(sha256, str) or not _SHA_RE.match(sha256):
        raise PackageStoreError(f"not a sha256: {str(sha256)[:80]!r}")
    if len(data) > max_bytes + 4096:
        raise PackageStoreError(f"package of {len(data)} bytes is over the limit of {max_bytes}")
    if package_sha256(data) != sha256:
        raise PackageStoreError(f"package bytes do not hash to {sha256[:16]}…")
    if not data.startswith(MAGIC):
        raise PackageStoreError("not a Headcast package archive (bad magic)")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + 1024)
    if end < 0:
        raise PackageStoreError("package archive index missing")
    try:
        index = loads_strict(data[len(MAGIC):end], "package archive index")
    except StrictJsonError as exc:
        raise PackageStoreError(str(exc)) from None
    names = _package_files()
    if not isinstance(index, dict) or sorted(index) != list(names) or \
            not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in index.values()):
        raise PackageStoreError(f"package archive must hold exactly {', '.join(names)} with sizes")
    body = memoryview(data)[end + 1:]
    if sum(index.values()) != len(body):
        raise PackageStoreError("package archive sizes do not add up")
    files, offset = {}, 0
    for name in names:
        files[name] = body[offset:offset + index[name]]
        offset += index[name]
    return files


def install_package(data: bytes, sha256: str, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Verifies the archive, unpacks it to ``root/<sha256>`` and validates it there as a package;
    returns the directory. An existing valid entry is returned as it is."""
    from inference.avatar_package import AvatarPackageError, load_package

    root = Path(root)
    final = root / sha256
    files = check_archive(data, sha256, max_bytes)
    if final.is_dir():
        try:
            load_package(final)
            return final
        except AvatarPackageError:
            shutil.rmtree(final, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{sha256}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    tmp.mkdir()
    try:
        for name, content in files.items():
            atomic_write_bytes(tmp / name, bytes(content), mode=0o644)
        try:
            load_package(tmp)
        except AvatarPackageError as exc:
            raise PackageStoreError(f"package {sha256[:16]}… is not a valid avatar package: "
                                    f"{str(exc).replace(str(tmp), '<package>')}") from None
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
        fsync_dir(root)
        return final
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


class PackageStore:
    """The room's packages: ``root/<sha256>.hcpkg`` archives, each verified and validated once."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES):
        self.root = Path(root)
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self.refused = 0

    def path(self, sha256: str) -> Path:
        if not _SHA_RE.match(sha256 or ""):
            raise PackageStoreError(f"not a sha256: {str(sha256)[:80]!r}")
        return self.root / f"{sha256}.hcpkg"

    def has(self, sha256: str) -> bool:
        try:
            return self.path(sha256).is_file()
        except PackageStoreError:
            return False

    def put(self, sha256: str, data: bytes) -> None:
        """Stores the archive once it verified and validated (unpacked in a scratch directory)."""
        if self.has(sha256):
            return
        scratch = self.root / ".validate"
        try:
            install_package(data, sha256, scratch, self.max_bytes)
        except PackageStoreError:
            self.refused += 1
            raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        atomic_write_bytes(self.path(sha256), data, mode=0o644)

    def get(self, sha256: str) -> bytes | None:
        path = self.path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if package_sha256(data) != sha256:   # a damaged store entry is never served
            path.unlink(missing_ok=True)
            return None
        return data


__all__ = [
    "DEFAULT_MAX_BYTES",
    "PackageStore",
    "PackageStoreError",
    "check_archive",
    "install_package",
    "pack_package",
    "package_sha256",
]
