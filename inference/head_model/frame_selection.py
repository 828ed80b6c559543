"""Rigid alignment of the tracked sequence, frame rejection and the robust neutral shape.

Frames are rejected when no face was found, when a hand covers the face, or when the stable
points do not fit the neutral head rigidly (bad tracking: the face mesh is distorted, not moved).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.features.alignment import STABLE_POINTS, to_canonical

MOUTH_INNER = (13, 14)  # upper / lower inner lip midpoints
EYE_LIDS = ((159, 145), (386, 374))  # upper / lower lid of each eye
MOUTH_CORNERS = (61, 291)


@dataclass(frozen=True)
class SelectionConfig:
    hand_dilate: int = 3  # frames around a detected hand are doubtful too (hand entering/leaving)
    residual_mads: float = 5.0  # stable-point misfit beyond median + this many MADs → rejected
    residual_floor: float = 0.04  # ...but never below this (interocular units)
    neutral_fraction: float = 0.15  # share of kept frames averaged into the neutral shape


@dataclass
class Selection:
    canonical: np.ndarray  # (N, 478, 3) float32, NaN for frames without a face
    rotation: np.ndarray  # (N, 3, 3) canonical → pixel
    translation: np.ndarray  # (N, 3)
    scale: np.ndarray  # (N,)
    keep: np.ndarray  # (N,) bool
    neutral: np.ndarray  # (478, 3)
    neutral_frames: np.ndarray  # indices
    rejected: dict[str, int] = field(default_factory=dict)


def _align_all(px: np.ndarray, found: np.ndarray, reference: np.ndarray | None):
    n = len(px)
    canon = np.full_like(px, np.nan)
    rot = np.tile(np.eye(3), (n, 1, 1))
    trans = np.zeros((n, 3))
    scale = np.ones(n)
    for i in np.flatnonzero(found):
        c, pose = to_canonical(px[i], reference)
        canon[i], rot[i], trans[i], scale[i] = c, pose.rotation, pose.translation, pose.scale
    return canon, rot, trans, scale


def _dilate(flags: np.ndarray, radius: int) -> np.ndarray:
    out = flags.copy()
    for r in range(1, radius + 1):
        out[r:] |= flags[:-r]
        out[:-r] |= flags[r:]
    return out


def select_frames(px: np.ndarray, found: np.ndarray, hand: np.ndarray,
                  config: SelectionConfig = SelectionConfig()) -> Selection:
    found = found.astype(bool)
    if not found.any():
        raise ValueError("no face was found in any frame")
    hand = _dilate(hand.astype(bool), config.hand_dilate) & found
    canon, *_ = _align_all(px, found, None)
    usable = found & ~hand
    if not usable.any():
        usable = found
    reference = np.nanmedian(canon[usable], axis=0)
    canon, rot, trans, scale = _align_all(px, found, reference)

    resid = np.full(len(px), np.inf)
    resid[found] = np.sqrt(((canon[found][:, STABLE_POINTS] - reference[STABLE_POINTS]) ** 2).sum(-1).mean(-1))
    r = resid[usable]
    med = float(np.median(r))
    mad = float(np.median(np.abs(r - med))) + 1e-9
    thresh = max(med + config.residual_mads * 1.4826 * mad, config.residual_floor)
    bad_fit = found & ~hand & (resid > thresh)
    keep = found & ~hand & ~bad_fit
    if not keep.any():
        raise ValueError("every frame with a face was rejected (occluded or badly tracked)")

    neutral, neutral_idx = robust_neutral(canon, keep, config.neutral_fraction)
    # Final pass aligned to the personal neutral, so poses and displacements share one frame.
    canon, rot, trans, scale = _align_all(px, found, neutral)
    return Selection(canon.astype(np.float32), rot, trans, scale, keep, neutral.astype(np.float32), neutral_idx,
                     {"no_face": int((~found).sum()), "hand_over_face": int(hand.sum()),
                      "bad_tracking": int(bad_fit.sum())})


def expression_scores(canon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mouth opening, eye opening) per frame, interocular units."""
    mouth = np.linalg.norm(canon[:, MOUTH_INNER[0]] - canon[:, MOUTH_INNER[1]], axis=-1)
    eyes = np.mean([np.linalg.norm(canon[:, a] - canon[:, b], axis=-1) for a, b in EYE_LIDS], axis=0)
    return mouth, eyes


def mouth_width(canon: np.ndarray) -> np.ndarray:
    return np.linalg.norm(canon[:, MOUTH_CORNERS[0]] - canon[:, MOUTH_CORNERS[1]], axis=-1)


def robust_neutral(canon: np.ndarray, keep: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Median shape of frames with a closed mouth, open eyes and the most typical face.

    A plain median over the clip would be biased by long laughing or crying passages; a closed,
    un-stretched mouth (a smile widens it) and open eyes define "neutral" for any subject.
    """
    idx = np.flatnonzero(keep)
    mouth, eyes = expression_scores(canon[idx])
    closed = (mouth <= np.quantile(mouth, 0.35)) & (mouth_width(canon[idx]) <= np.quantile(mouth_width(canon[idx]), 0.4))
    eyes_ok = eyes >= np.quantile(eyes, 0.3)
    cand = idx[closed & eyes_ok]
    if len(cand) < 3:
        cand = idx[closed] if closed.sum() >= 3 else idx
    med = np.median(canon[cand], axis=0)
    dist = np.sqrt(((canon[cand] - med) ** 2).sum(-1).mean(-1))
    n = max(3, int(round(fraction * len(idx))))
    chosen = cand[np.argsort(dist)[:n]]
    return np.median(canon[chosen], axis=0), np.sort(chosen)


def holdout_blocks(kept: np.ndarray, video: np.ndarray, frame: np.ndarray, fraction: float, blocks: int,
                   frame_step: int = 1) -> list[np.ndarray]:
    """Held-out frames as ``blocks`` contiguous blocks spread evenly over the kept frames.

    A single contiguous slice of a clip that shows each expression once holds out one expression
    (the sample's 30-frame slice was one smile in which the mouth never moved, so mouth r on it was
    noise). Blocks centred at the (k + ½)/B quantiles of the kept frames sample the whole clip
    systematically — chosen by position, never by what the frames show. Each block lies inside one
    run of consecutive kept frames of one video (so a scored range never spans rejected frames) and
    is ~fraction/B of the kept frames long. Returns the blocks (global frame indices), in order.
    """
    kept = np.asarray(kept, np.int64)
    n = len(kept)
    total = max(1, int(round(fraction * n)))
    count = max(1, min(blocks, total))
    sizes = [total // count + (1 if k < total % count else 0) for k in range(count)]
    v, f = np.asarray(video)[kept], np.asarray(frame)[kept]
    breaks = np.r_[True, (v[1:] != v[:-1]) | (f[1:] - f[:-1] > frame_step)]
    run = np.cumsum(breaks) - 1
    run_lo = np.flatnonzero(breaks)
    run_hi = np.r_[run_lo[1:], n]  # one past the end
    taken = np.zeros(n, bool)
    out = []
    for k, size in enumerate(sizes):
        centre = min(n - 1, int((k + 0.5) * n / count))
        lo, hi = run_lo[run[centre]], run_hi[run[centre]]
        start = int(np.clip(centre - size // 2, lo, max(lo, hi - size)))
        idx = np.arange(start, min(start + size, hi))
        idx = idx[~taken[idx]]
        if len(idx):
            taken[idx] = True
            out.append(kept[idx])
    return out
