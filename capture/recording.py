"""Stream recordings: the exact bytes a capture node sent, with their send times.

File layout (little-endian)::

    header   magic b"HCREC\\0\\r\\n" (8 bytes), version u16, reserved u16, created_unix_ns i64
    record*  length u32, crc32 u32, body[length]
    body     t_send_ns i64, n_parts u16, then per part: length u32, bytes

Append-only with a length and CRC per record, flushed after every record: a recorder killed at
any instant (SIGKILL, power cut after the OS wrote the page) leaves a file whose complete records
all read back; the reader stops at the first incomplete or corrupt record and reports the size of
that truncated tail. The header is written to a temporary file and renamed into place, so the
recording path never holds a file without a valid header.
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from core.atomic_files import atomic_write_bytes
from core.errors import HeadcastError

MAGIC = b"HCREC\0\r\n"  # the \r\n catches text-mode mangling
VERSION = 1
_HEADER = struct.Struct("<8sHHq")
_RECORD = struct.Struct("<II")
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
        self._f.write(_RECORD.pack(len(body), zlib.crc32(body)) + body)
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


@dataclass
class RecordingReader:
    """Reads records in order; after iterating, ``truncated_tail_bytes`` says how much was unusable."""

    path: Path
    version: int = 0
    created_unix_ns: int = 0
    truncated_tail_bytes: int = 0
    records_read: int = 0
    tail_reason: str = ""

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
        if version != VERSION:
            raise RecordingError(f"{self.path} is recording format version {version}; this build reads {VERSION}")
        self.version, self.created_unix_ns = version, created

    def __iter__(self) -> Iterator[Record]:
        self.records_read = 0
        self.truncated_tail_bytes = 0
        self.tail_reason = ""
        with open(self.path, "rb") as f:
            data_end = os.fstat(f.fileno()).st_size
            pos = _HEADER.size
            f.seek(pos)
            while pos < data_end:
                rec, reason = self._read_one(f)
                if rec is None:
                    self.truncated_tail_bytes = data_end - pos
                    self.tail_reason = reason
                    return
                pos = f.tell()
                self.records_read += 1
                yield rec

    @staticmethod
    def _read_one(f: BinaryIO) -> tuple[Record | None, str]:
        head = f.read(_RECORD.size)
        if len(head) < _RECORD.size:
            return None, "incomplete record header"
        length, crc = _RECORD.unpack(head)
        if length > MAX_RECORD_BYTES or length < _BODY_HEAD.size:
            return None, f"implausible record length {length}"
        body = f.read(length)
        if len(body) < length:
            return None, f"incomplete record ({len(body)} of {length} bytes)"
        if zlib.crc32(body) != crc:
            return None, "CRC mismatch"
        t_send, n_parts = _BODY_HEAD.unpack_from(body)
        off = _BODY_HEAD.size
        parts = []
        for _ in range(n_parts):
            if off + _PART_LEN.size > length:
                return None, "part table overruns record"
            (plen,) = _PART_LEN.unpack_from(body, off)
            off += _PART_LEN.size
            if off + plen > length:
                return None, "part overruns record"
            parts.append(body[off:off + plen])
            off += plen
        if off != length or not 1 <= n_parts <= MAX_PARTS:
            return None, "malformed record body"
        return Record(t_send, tuple(parts)), ""

    def read_all(self) -> list[Record]:
        return list(self)
