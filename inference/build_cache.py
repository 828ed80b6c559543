"""Stage caching for resumable builds: one JSON marker per finished stage in the work directory.

A stage is skipped when its marker holds the same key; the key hashes the stage's own config and
the keys of the stages it reads, so changing anything upstream reruns everything downstream.
Markers are written last and atomically: a stage killed half-way has no marker and reruns.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


def stage_key(name: str, config: Any, upstream: list[str]) -> str:
    blob = json.dumps({"stage": name, "config": config, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@dataclass
class StageRecord:
    name: str
    cached: bool
    seconds: float
    info: dict = field(default_factory=dict)


class StageCache:
    def __init__(self, work: Path):
        self.work = work
        (work / "stages").mkdir(parents=True, exist_ok=True)
        self.records: list[StageRecord] = []

    def dir(self, name: str) -> Path:
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        return d

    def _marker(self, name: str) -> Path:
        return self.work / "stages" / f"{name}.json"

    def run(self, name: str, key: str, fn: Callable[[Path], dict]) -> dict:
        """Run ``fn(stage_dir) -> info`` unless a marker with ``key`` exists; returns the info."""
        marker = self._marker(name)
        if marker.is_file():
            try:
                done = json.loads(marker.read_text())
            except json.JSONDecodeError:
                done = {}
            if done.get("key") == key:
                self.records.append(StageRecord(name, True, float(done.get("seconds", 0.0)), done.get("info", {})))
                return done.get("info", {})
            marker.unlink()
        t0 = time.monotonic()
        info = fn(self.dir(name))
        seconds = time.monotonic() - t0
        atomic_write_text(marker, json.dumps({"key": key, "seconds": seconds, "info": info}, default=str))
        self.records.append(StageRecord(name, False, seconds, info))
        return info
