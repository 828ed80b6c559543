"""Stage caching for resumable builds: one JSON marker per finished stage in the work directory.

A stage is skipped when its marker holds the same key; the key hashes the stage's own config and
the keys of the stages it reads, so changing anything upstream reruns everything downstream.
Markers are written last and atomically: a stage killed half-way has no marker and reruns.

What goes into each stage's key is part of the work directory's format: an existing work
directory stays valid only while the keys stay the same (tests/test_build_avatar.py pins them for
the quick preset). Bump ``STAGE_VERSION`` when an existing stage's algorithm changes, so a build
never reuses stale stages.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from core.atomic_files import atomic_write_text

# Adding the animation stage (builder v5) changed no earlier stage: their caches stayed valid.
STAGE_VERSION = "4"


def stage_key(name: str, config: Any, upstream: list[str]) -> str:
    blob = json.dumps({"stage": name, "config": config, "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def builder_stage_key(name: str, config: Any, upstream: list[str]) -> str:
    """The key of one of the avatar builder's stages: its config under this ``STAGE_VERSION``."""
    return stage_key(name, {"builder_version": STAGE_VERSION, "config": config}, upstream)


@dataclass(frozen=True)
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
