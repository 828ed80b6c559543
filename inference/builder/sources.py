"""The build's source videos, probed once: what the track, textures and preview stages read and
what the manifest's provenance records."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.atomic_files import sha256_file
from inference.head_model.video_io import VideoError, probe

from .config import BuildError


@dataclass(frozen=True)
class Source:
    path: str  # absolute
    sha256: str
    frames: int  # the container's count (decoding is authoritative)
    fps: float
    width: int
    height: int


def probe_sources(videos: tuple[str, ...]) -> tuple[Source, ...]:
    """Every video probed and hashed; an unreadable one is a ``BuildError`` naming it."""
    sources = []
    for v in videos:
        try:
            info = probe(v)
        except VideoError as exc:
            raise BuildError(str(exc)) from exc
        sources.append(Source(str(Path(v).absolute()), sha256_file(Path(v)), info.frames, info.fps, info.width,
                              info.height))
    return tuple(sources)

