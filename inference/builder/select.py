"""Stage ``select``: rigid alignment, frame rejection, the robust neutral, the held-out blocks."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.frame_selection import SelectionConfig, holdout_blocks, select_frames

from .cache import StageCache, builder_stage_key
from .config import BuildError
from .track import Tracks

MIN_KEPT = 8


@dataclass(frozen=True)
class SelectInput:
    tracks: Tracks
    config: SelectionConfig
    holdout_fraction: float
    holdout_blocks: int
    frame_step: int  # the track stage's (a held-out block's length is counted in source frames)


@dataclass(frozen=True, eq=False)
class SelectedFrames:
    """Per global frame (Tracks' rows): the face in the canonical frame and its rigid pose; which
    frames are kept; the neutral; which kept frames train and which are held out."""

    key: str
    info: dict  # frames, kept, rejected (by reason), train, holdout (frame ranges), neutral_frames
    canonical: np.ndarray  # (N, 478, 3) landmarks in the canonical (head) frame
    rotation: np.ndarray  # (N, 3, 3) float64: canonical → pixel
    translation: np.ndarray  # (N, 3) float64
    scale: np.ndarray  # (N,) float64
    keep: np.ndarray  # (N,) bool: usable frames
    neutral: np.ndarray  # (478, 3) robust neutral face (canonical)
    neutral_frames: np.ndarray  # global frames the neutral was estimated from
    train: np.ndarray  # (T,) int64 global frames trained on
    holdout: np.ndarray  # (H,) int64 global frames held out (never trained on)

    @property
    def kept(self) -> np.ndarray:
        return np.flatnonzero(self.keep)


def select(cache: StageCache, inp: SelectInput) -> SelectedFrames:
    t = inp.tracks
    key = builder_stage_key("select", {"sel": asdict(inp.config), "h": [inp.holdout_fraction, inp.holdout_blocks]},
                            [t.key])

    def run(d: Path) -> dict:
        try:
            s = select_frames(t.px, t.found, t.hand, inp.config)
        except ValueError as exc:
            raise BuildError(str(exc)) from exc
        kept = np.flatnonzero(s.keep)
        if len(kept) < MIN_KEPT:
            raise BuildError(f"only {len(kept)} usable frames after rejecting occluded/badly tracked ones; "
                             f"need at least {MIN_KEPT}")
        blocks = holdout_blocks(kept, t.video, t.frame, inp.holdout_fraction, inp.holdout_blocks, inp.frame_step)
        holdout = np.concatenate(blocks)
        train = np.setdiff1d(kept, holdout)
        save_np({"canonical": s.canonical, "rotation": s.rotation.astype(np.float64),
                 "translation": s.translation.astype(np.float64), "scale": s.scale.astype(np.float64),
                 "keep": s.keep.astype(np.uint8), "neutral": s.neutral, "neutral_frames": s.neutral_frames,
                 "train": train.astype(np.int64), "holdout": holdout.astype(np.int64)},
                str(d / "selection.safetensors"))
        return {"frames": int(len(s.keep)), "kept": int(len(kept)), "rejected": s.rejected,
                "train": int(len(train)),
                "holdout": [[f"video{int(t.video[g])}:frame{int(t.frame[g])}" for g in (b[0], b[-1])]
                            for b in blocks],
                "neutral_frames": int(len(s.neutral_frames))}

    info = cache.run("select", key, run)
    a = load_np(str(cache.work / "select" / "selection.safetensors"))
    return SelectedFrames(key=key, info=info, canonical=a["canonical"], rotation=a["rotation"],
                     translation=a["translation"], scale=a["scale"], keep=a["keep"].astype(bool),
                     neutral=a["neutral"], neutral_frames=a["neutral_frames"], train=a["train"],
                     holdout=a["holdout"])
