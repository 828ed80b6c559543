"""The driver's neutral face: robust estimate, file format, and the online estimator.

Person-independent ``mp478`` features are "canonical landmarks minus the driver's own neutral",
so the neutral must be the driver's relaxed face, not their average expression. The estimate is a
per-coordinate median over the *low-activity* frames of a short recording: frames whose mouth, eyes
and brows sit far from the overall median (a blink, a word, a smile) are left out, and the median
of what remains is robust to the few that slip through.

This module is plain numpy over canonical shapes (478, 3) (interocular distance = 1); tracking and
alignment happen in the caller, so calibration does not depend on the tracker.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from core.atomic_files import atomic_write
from core.errors import HeadcastError

log = logging.getLogger(__name__)

SHAPE = (478, 3)
FORMAT_VERSION = 1

# Expression-bearing FaceMesh points: lips, eyelids, brows. Activity is measured on these only so
# that head pose residue on the rigid points does not count as expression.
ACTIVE_POINTS = np.array(sorted({
    0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181, 185,  # lips
    267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375, 402, 405, 409, 415,
    159, 145, 158, 153, 160, 144, 386, 374, 385, 380, 387, 373,  # eyelids
    70, 63, 105, 66, 107, 300, 293, 334, 296, 336,  # brows
    152, 148, 377,  # chin
}), dtype=np.int64)


class NeutralError(HeadcastError, ValueError):
    """A neutral face could not be estimated, read or written; the message says why."""


@dataclass(frozen=True)
class NeutralFace:
    canonical: np.ndarray  # (478, 3) float32, canonical frame, interocular = 1
    frames_seen: int  # face frames offered to the estimator
    frames_used: int  # low-activity frames the median was taken over
    method: str = "median-low-activity"
    source: str = ""  # what it was estimated from (file name, camera index, "online")
    # The driver's learned expression range (calibration.expression_range: signal → range), saved
    # with the neutral so the next session starts from it; None: not learned (older files too).
    ranges: dict | None = None

    def __post_init__(self):
        arr = np.asarray(self.canonical, dtype=np.float32)
        if arr.shape != SHAPE or not np.isfinite(arr).all():
            raise NeutralError(f"neutral face must be a finite {SHAPE} array, got shape {arr.shape}")
        object.__setattr__(self, "canonical", arr)

    # -- file format: .npz without pickles, written atomically -----------------------------------
    def save(self, path: Path) -> Path:
        arrays = dict(format_version=np.int64(FORMAT_VERSION), canonical=self.canonical,
                      frames_seen=np.int64(self.frames_seen), frames_used=np.int64(self.frames_used),
                      method=np.str_(self.method), source=np.str_(self.source), created_unix=np.float64(time.time()))
        if self.ranges:
            arrays["range_names"] = np.array(sorted(self.ranges), dtype=np.str_)
            arrays["range_values"] = np.array([float(self.ranges[k]) for k in sorted(self.ranges)], np.float64)
        # Readers see the old file or the new one, never half of one.
        return atomic_write(Path(path), lambda f: np.savez(f, **arrays))

    @classmethod
    def load(cls, path: Path) -> "NeutralFace":
        path = Path(path)
        if not path.is_file():
            raise NeutralError(f"neutral file {path} does not exist (make one with: headcast calibrate neutral)")
        try:
            with np.load(path, allow_pickle=False) as z:
                version = int(z["format_version"])
                if version != FORMAT_VERSION:
                    raise NeutralError(f"{path}: neutral format version {version}, this build reads {FORMAT_VERSION}")
                ranges = None
                if "range_names" in z.files:
                    names, values = z["range_names"], z["range_values"].astype(np.float64)
                    if names.shape != values.shape or names.ndim != 1 or not np.isfinite(values).all():
                        raise NeutralError(f"{path}: malformed expression range")
                    ranges = {str(k): float(v) for k, v in zip(names, values)}
                return cls(
                    canonical=z["canonical"],
                    frames_seen=int(z["frames_seen"]),
                    frames_used=int(z["frames_used"]),
                    method=str(z["method"]),
                    source=str(z["source"]),
                    ranges=ranges,
                )
        except NeutralError:
            raise
        except Exception as exc:  # zip, key or dtype errors all mean the same thing to the user
            raise NeutralError(f"{path} is not a readable neutral face file: {type(exc).__name__}: {exc}") from exc


def activity(canonicals: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Per-frame RMS distance of the expression-bearing points from a reference shape (IOD units)."""
    d = canonicals[:, ACTIVE_POINTS, :] - reference[ACTIVE_POINTS, :]
    return np.sqrt((d ** 2).sum(-1).mean(-1))


@dataclass(frozen=True)
class NeutralEstimateConfig:
    keep_fraction: float = 0.5  # the least active half of the frames makes the median
    min_frames: int = 10
    iterations: int = 2  # re-select low-activity frames against the refined median


def estimate_neutral(canonicals: Sequence[np.ndarray] | np.ndarray, config: NeutralEstimateConfig = NeutralEstimateConfig(),
                     source: str = "") -> NeutralFace:
    arr = np.asarray(canonicals, dtype=np.float32)
    if arr.size == 0:
        arr = arr.reshape((0, *SHAPE))
    if arr.ndim != 3 or arr.shape[1:] != SHAPE:
        raise NeutralError(f"expected canonical shapes (N, 478, 3), got {arr.shape}")
    arr = arr[np.isfinite(arr).all(axis=(1, 2))]
    if len(arr) < config.min_frames:
        raise NeutralError(
            f"only {len(arr)} frames with a face; need at least {config.min_frames} "
            "(record longer, face the camera, check the lighting)"
        )
    med = np.median(arr, axis=0)
    keep = np.ones(len(arr), dtype=bool)
    for _ in range(max(1, config.iterations)):
        act = activity(arr, med)
        keep = act <= np.quantile(act, config.keep_fraction)
        med = np.median(arr[keep], axis=0)
    return NeutralFace(med.astype(np.float32), frames_seen=len(arr), frames_used=int(keep.sum()), source=source)
