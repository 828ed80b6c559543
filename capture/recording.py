"""Stream recordings: the exact bytes a capture node sent, with their send times.

File layout (little-endian)::

    header   magic b"HCREC\\0\\r\\n" (8 bytes), version u16, reserved u16, created_unix_ns i64
    record*  version 2: magic b"HCR2", length u32, crc32 u32 (of length + body), body[length]
             version 1: length u32, crc32 u32 (of body), body[length]
    body     t_send_ns i64, n_parts u16, then per part: length u32, bytes

Append-only with a length and CRC per record, flushed after every record: a recorder killed at
any instant (SIGKILL, power cut after the OS wrote the page) leaves a file whose complete records
all read back. The header is written to a temporary file and renamed into place, so the recording
path never holds a file without a valid header.

**Damage in the middle loses only the damaged records** (issue 11: 16 corrupt bytes in the middle
lost everything after them, reported as a "truncated tail"; a corrupt length in the first record
lost all). The reader resynchronises on the next valid record — in version 2 the next record magic
whose length is plausible and whose CRC (which covers the length too) matches; in version 1 files,
which have no record magic, the next offset where a plausible length and a matching CRC meet —
and reports each skipped region (`damaged`: offset, bytes, reason). Only damage that no valid
record follows is a truncated tail.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

from core.atomic_files import atomic_write_bytes
from core.errors import HeadcastError

MAGIC = b"HCREC\0\r\n"  # the \r\n catches text-mode mangling
VERSION = 2
READABLE_VERSIONS = (1, 2)
RECORD_MAGIC = b"HCR2"
_HEADER = struct.Struct("<8sHHq")
_RECORD = struct.Struct("<II")          # version 1: length, crc32(body)
_RECORD2 = struct.Struct("<4sII")       # version 2: magic, length, crc32(length bytes + body)
_BODY_HEAD = struct.Struct("<qH")
_PART_LEN = struct.Struct("<I")
MAX_RECORD_BYTES = 1 << 20  # far above any protocol message; a larger length means corruption
MAX_PARTS = 16


class RecordingError(HeadcastError, ValueError):
    """The file is not a recording this build can read (wrong magic or version, unreadable)."""


@dataclass(frozen=True)
class Record:
    t_send_ns: int
    parts: tuple[bytes, ...]


class RecordingWriter:
    def __init__(self, path: Path, created_unix_ns: int | None = None):
        import time

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        header = _HEADER.pack(MAGIC, VERSION, 0, created_unix_ns if created_unix_ns is not None else time.time_ns())
        # The header is written atomically: a recording is either absent or a valid (empty) one.
        atomic_write_bytes(self.path, header)
        # Unbuffered: each record reaches the OS in one write() call, so a killed process never
        # leaves half a record in a user-space buffer.
        self._f: BinaryIO | None = open(self.path, "ab", buffering=0)
        self.records = 0

    def write(self, t_send_ns: int, parts: list[bytes] | tuple[bytes, ...]) -> None:
        if self._f is None:
            raise ValueError("recording is closed")
        if not 1 <= len(parts) <= MAX_PARTS:
            raise ValueError(f"a record holds 1-{MAX_PARTS} message parts, got {len(parts)}")
        chunks = [_BODY_HEAD.pack(int(t_send_ns), len(parts))]
        for p in parts:
            p = bytes(p)
            chunks.append(_PART_LEN.pack(len(p)))
            chunks.append(p)
        body = b"".join(chunks)
        if len(body) > MAX_RECORD_BYTES:
            raise ValueError(f"record of {len(body)} bytes exceeds {MAX_RECORD_BYTES}")
        length = struct.pack("<I", len(body))
        self._f.write(RECORD_MAGIC + length + struct.pack("<I", zlib.crc32(body, zlib.crc32(length))) + body)
        self.records += 1

    def close(self) -> None:
        if self._f is not None:
            try:
                os.fsync(self._f.fileno())
            finally:
                self._f.close()
                self._f = None

    def __enter__(self) -> "RecordingWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class DamagedRegion:
    offset: int   # byte offset in the file where the damage starts
    length: int   # bytes skipped until the next valid record (or the end of the file)
    reason: str


@dataclass
class RecordingReader:
    """Reads records in order, resynchronising past damage; after iterating, ``damaged`` lists the
    skipped regions and ``truncated_tail_bytes`` the unusable end (damage no valid record follows)."""

    path: Path
    version: int = 0
    created_unix_ns: int = 0
    truncated_tail_bytes: int = 0
    records_read: int = 0
    tail_reason: str = ""
    damaged: list[DamagedRegion] = field(default_factory=list)

    def __post_init__(self):
        self.path = Path(self.path)
        if not self.path.is_file():
            raise RecordingError(f"recording {self.path} does not exist")
        with open(self.path, "rb") as f:
            head = f.read(_HEADER.size)
        if len(head) < _HEADER.size:
            raise RecordingError(f"{self.path} is too short to be a recording ({len(head)} bytes)")
        magic, version, _, created = _HEADER.unpack(head)
        if magic != MAGIC:
            raise RecordingError(f"{self.path} is not a headcast recording (bad magic {magic!r})")
        if version not in READABLE_VERSIONS:
            raise RecordingError(f"{self.path} is recording format version {version}; this build reads "
                                 f"{', '.join(map(str, READABLE_VERSIONS))}")
        self.version, self.created_unix_ns = version, created

    @property
    def skipped_bytes(self) -> int:
        """Bytes skipped in the middle (not counting the truncated tail)."""
        return sum(d.length for d in self.damaged) - self.truncated_tail_bytes

    def __iter__(self) -> Iterator[Record]:
        self.records_read = 0
        self.truncated_tail_bytes = 0
        self.tail_reason = ""
        self.damaged = []
        with open(self.path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= _HEADER.size:
                return
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                pos = _HEADER.size
                while pos < size:
                    rec, end, reason = self._parse(data, pos, size)
                    if rec is None:
                        nxt = self._resync(data, pos + 1, size)
                        self.damaged.append(DamagedRegion(pos, (nxt if nxt is not None else size) - pos, reason))
                        if nxt is None:
                            self.truncated_tail_bytes = size - pos
                            self.tail_reason = reason
                            return
                        pos = nxt
                        continue
                    pos = end
                    self.records_read += 1
                    yield rec

    def _parse(self, data, pos: int, size: int) -> tuple[Record | None, int, str]:
        """The record at `pos`: (record, end offset, "") or (None, 0, what is wrong)."""
        if self.version >= 2:
            if pos + _RECORD2.size > size:
                return None, 0, "incomplete record header"
            magic, length, crc = _RECORD2.unpack_from(data, pos)
            if magic != RECORD_MAGIC:
                return None, 0, "bad record magic"
            start = pos + _RECORD2.size
        else:
            if pos + _RECORD.size > size:
                return None, 0, "incomplete record header"
            length, crc = _RECORD.unpack_from(data, pos)
            start = pos + _RECORD.size
        if length > MAX_RECORD_BYTES or length < _BODY_HEAD.size:
            return None, 0, f"implausible record length {length}"
        if start + length > size:
            return None, 0, f"incomplete record ({size - start} of {length} bytes)"
        body = data[start:start + length]
        expected = zlib.crc32(body, zlib.crc32(data[pos + 4:pos + 8])) if self.version >= 2 else zlib.crc32(body)
        if expected != crc:
            return None, 0, "CRC mismatch"
        rec, reason = _parse_body(body)
        return rec, start + length, reason

    def _resync(self, data, start: int, size: int) -> int | None:
        """Offset of the next valid record at or after `start`, or None."""
        if self.version >= 2:
            pos = start
            while True:
                pos = data.find(RECORD_MAGIC, pos, size)
                if pos < 0:
                    return None
                if self._parse(data, pos, size)[0] is not None:
                    return pos
                pos += 1
        for pos in range(start, size - _RECORD.size):  # version 1: no record magic, test every offset
            length = int.from_bytes(data[pos:pos + 4], "little")
            if _BODY_HEAD.size <= length <= MAX_RECORD_BYTES and pos + _RECORD.size + length <= size \
                    and self._parse(data, pos, size)[0] is not None:
                return pos
        return None

    def read_all(self) -> list[Record]:
        return list(self)


def _parse_body(body: bytes) -> tuple[Record | None, str]:
    length = len(body)
    t_send, n_parts = _BODY_HEAD.unpack_from(body)
    if not 1 <= n_parts <= MAX_PARTS:
        return None, "malformed record body"
    off = _BODY_HEAD.size
    parts = []
    for _ in range(n_parts):
        if off + _PART_LEN.size > length:
            return None, "part table overruns record"
        (plen,) = _PART_LEN.unpack_from(body, off)
        off += _PART_LEN.size
        if off + plen > length:
            return None, "part overruns record"
        parts.append(bytes(body[off:off + plen]))
        off += plen
    if off != length:
        return None, "malformed record body"
    return Record(t_send, tuple(parts)), ""
