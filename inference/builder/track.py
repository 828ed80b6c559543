"""Stage ``track``: FaceMesh (the capture node's tracker) and the hand-over-face check on every
(``frame_step``-th) frame of every source video."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.tracking import TrackConfig, track_video
from inference.head_model.video_io import iter_frames

from .cache import StageCache, builder_stage_key
from .config import BuildError
from .progress import progress
from .sources import Source


@dataclass(frozen=True)
class TrackInput:
    sources: tuple[Source, ...]
    config: TrackConfig


@dataclass(frozen=True, eq=False)
class Tracks:
    """Every tracked frame of every video, concatenated in time order: a row index is a *global
    frame index*, the unit every later stage counts in."""

    key: str
    px: np.ndarray  # (N, 478, 3) landmarks in pixels (FaceMesh's z scaled alike); NaN where no face
    found: np.ndarray  # (N,) bool: a face was found
    hand: np.ndarray  # (N,) bool: a hand covers the face
    video: np.ndarray  # (N,) int64: which source
    frame: np.ndarray  # (N,) int64: the frame's index in its video


def decode_frames(sources, tracks: Tracks, frames) -> Iterator[tuple[int, np.ndarray]]:
    """(global frame, BGR image) for each of the global ``frames``, in video and then frame order:
    one decoding pass per video that holds any of them, stopped after its last one."""
    for v, s in enumerate(sources):
        want = {int(tracks.frame[g]): int(g) for g in frames if int(tracks.video[g]) == v}
        if not want:
            continue
        last = max(want)
        for fi, image in enumerate(iter_frames(s.path)):
            g = want.get(fi)
            if g is not None:
                yield g, image
            if fi >= last:
                break


def _load(d: Path, n_videos: int, key: str) -> Tracks:
    parts = [load_np(str(d / f"video{i}.safetensors")) for i in range(n_videos)]
    return Tracks(
        key=key,
        px=np.concatenate([p["landmarks_px"] for p in parts]),
        found=np.concatenate([p["found"] for p in parts]).astype(bool),
        hand=np.concatenate([p["hand"] for p in parts]).astype(bool),
        video=np.concatenate([np.full(len(p["found"]), i) for i, p in enumerate(parts)]),
        frame=np.concatenate([p["frame_index"] for p in parts]),
    )


def track(cache: StageCache, inp: TrackInput) -> Tracks:
    sources, cfg = inp.sources, inp.config
    key = builder_stage_key("track", {"sources": [s.sha256 for s in sources], "track": asdict(cfg)}, [])

    def run(d: Path) -> dict:
        total = sum(max(s.frames // cfg.frame_step, 1) for s in sources)
        info = {"videos": []}
        with progress(total, "track") as bar:
            for i, s in enumerate(sources):
                tv = track_video(s.path, cfg, on_frame=lambda: bar.update(1))
                save_np({"landmarks_px": tv.landmarks_px, "frame_index": tv.frame_index.astype(np.int64),
                         "found": tv.found.astype(np.uint8), "hand": tv.hand_occluded.astype(np.uint8),
                         "size": np.array([tv.width, tv.height], np.int64)}, str(d / f"video{i}.safetensors"))
                info["videos"].append({"frames": int(len(tv.found)), "faces": int(tv.found.sum())})
        return info

    info = cache.run("track", key, run)
    if sum(v["faces"] for v in info["videos"]) == 0:
        names = ", ".join(Path(s.path).name for s in sources)
        raise BuildError(f"no face found in any frame of {names}: the video must show one person's face")
    return _load(cache.work / "track", len(sources), key)
