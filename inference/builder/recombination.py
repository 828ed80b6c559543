"""Derived once per build, shared by the basis, VAE and animation stages: the target's relaxed face
and the recombined faces' donor pairs (``face_regions``: the upper face of one frame with the lower
face of another). Not a cached stage: both are cheap, deterministic functions of ``track`` and
``select``, and every stage that uses them has their configuration in its key
(``BuildConfig.recombination_key``)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.features.alignment import STABLE_POINTS, to_canonical, umeyama
from inference.head_model.face_regions import RecombineConfig, RegionSplit, draw_pairs, relaxed_face
from inference.head_model.topology import NUM_MESH_POINTS

from .select import SelectedFrames
from .track import Tracks


@dataclass(frozen=True, eq=False)
class TargetRelaxedFace:
    """The target's own relaxed face (the origin of her training features) and the kept frames its
    upper and lower face come from (global frame indices).

    At runtime the capture node subtracts the *driver's* relaxed face (``headcast calibrate
    neutral``) from the driver's face, so the training pairs must mean the same: "this face minus
    its own relaxed face". A calibration recording shows a relaxed face throughout; a target clip
    may never show one whole (the sample laughs or cries in every usable frame), so it is assembled
    per region (``face_regions.relaxed_face``: closed, unstretched mouth; open eyes), from
    geometric-frame canonicals (as the capture node measures them) realigned to a first estimate on
    the stable points."""

    canonical: np.ndarray  # (478, 3)
    upper_frames: np.ndarray
    lower_frames: np.ndarray


def target_relaxed_face(tracks: Tracks, selection: SelectedFrames, regions: RegionSplit) -> TargetRelaxedFace:
    kept = selection.kept
    canon = np.array([to_canonical(tracks.px[g])[0] for g in kept])
    first = relaxed_face(canon, regions).canonical
    realigned = np.array([umeyama(c[STABLE_POINTS], first[STABLE_POINTS]).apply(c) for c in canon])
    r = relaxed_face(realigned, regions)
    return TargetRelaxedFace(r.canonical, kept[r.upper_frames], kept[r.lower_frames])


@dataclass(frozen=True, eq=False)
class Recombination:
    """One set of donor pairs for basis, VAE and animation, and the region weight that blends them."""

    pairs: np.ndarray  # (M, 2) int64 [upper donor, lower donor] training frames (global); (0, 2) when disabled
    point_weight: np.ndarray  # (478,) upper-face weight of every landmark (at the neutral)

    def displacements(self, selection: SelectedFrames, pairs: np.ndarray | None = None) -> np.ndarray:
        """(M, P, 3) canonical displacements from the neutral of the recombined faces."""
        pairs = self.pairs if pairs is None else pairs
        neutral = selection.neutral
        disp = selection.canonical[:, :NUM_MESH_POINTS] - neutral[:NUM_MESH_POINTS]
        w = self.point_weight[:NUM_MESH_POINTS, None]
        return w * disp[pairs[:, 0]] + (1 - w) * disp[pairs[:, 1]]


def draw_recombination(selection: SelectedFrames, relaxed: TargetRelaxedFace, regions: RegionSplit,
                       config: RecombineConfig) -> Recombination:
    """A share of the pairs joins frames the relaxed face was assembled from (open eyes above, a
    closed mouth below): recombined, they are the target's relaxed face with its natural variation —
    the face every relaxed driver's features point at, which the clip itself may never show."""
    point_weight = regions.upper_weight(selection.neutral, selection.neutral)
    if not config.enabled:
        return Recombination(np.zeros((0, 2), np.int64), point_weight)
    train = selection.train
    n_relaxed = int(round(config.relaxed_share * config.pairs))
    upper, lower = np.intersect1d(relaxed.upper_frames, train), np.intersect1d(relaxed.lower_frames, train)
    if not (len(upper) and len(lower)):
        n_relaxed = 0
    pairs = draw_pairs(train, config.pairs - n_relaxed, config.seed)
    if n_relaxed:
        rng = np.random.default_rng(config.seed + 1)
        relaxed_pairs = np.stack([rng.choice(upper, n_relaxed), rng.choice(lower, n_relaxed)], 1)
        pairs = np.concatenate([relaxed_pairs, pairs])
    return Recombination(pairs, point_weight)
