"""The online neutral: the driver's most relaxed stretch of the last seconds, measured in time.

The old estimator took the median of the low-activity half of the first ~30 *frames* and froze it.
Measured on the sample man cut to start mid-smile, that neutral was a smile and the mapping
inverted (mouth r −0.85): "low activity" was measured against the median of those same frames, so
a face that smiled throughout had no activity at all. This one differs in three ways:

* **Time, not frames.** Frames are kept in a sliding window of ``window_s`` seconds (sub-sampled to
  ``sample_period_s`` so 15, 30 and 60 fps cameras keep the same evidence), and the estimate is
  trusted once ``settle_s`` seconds of face have been seen.
* **Relaxedness is absolute, not relative to the window.** Each frame gets an expression-energy
  score from what a relaxed face *is*: lips closed (inner-lip gap), mouth narrow (corner distance;
  within one person narrower = less smile), eyes open (below the window's open-eye level = a blink
  or squint), brows at the window's median height. The neutral is the per-coordinate median of the
  ``segment_s`` stretch with the lowest energy plus mouth motion (a talking mouth moves).
* **It may improve, never regress.** The window keeps sliding after the estimate settles; a later
  stretch replaces the neutral only when its energy is lower by ``improve_margin`` (≈ a lip gap
  0.015 IOD smaller or a mouth 0.025 IOD narrower). A held smile scores *higher* than the relaxed
  face already found, so 30 s of smiling never becomes the neutral: the avatar keeps smiling.

Plain numpy over canonical shapes (478, 3) (interocular distance 1); the FaceMesh indices below
repeat the few that `inference.features.expression_signals` names, because calibration sits below
inference in the import order.
"""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

import numpy as np

from calibration.neutral import NeutralFace

log = logging.getLogger(__name__)

SHAPE = (478, 3)
_UPPER_INNER_LIP, _LOWER_INNER_LIP = 13, 14
_MOUTH_CORNERS = (61, 291)
_EYES = (((33, 133), ((159, 145), (158, 153), (160, 144))),
         ((263, 362), ((386, 374), (385, 380), (387, 373))))
_BROWS = (70, 63, 105, 66, 107, 300, 293, 334, 296, 336)
_EYE_LINE = (33, 133, 263, 362)


@dataclass(frozen=True)
class OnlineNeutralConfig:
    window_s: float = 20.0  # evidence kept (seconds of face)
    sample_period_s: float = 1 / 30  # frames closer than this are not stored (60 fps keeps every 2nd)
    settle_s: float = 1.0  # seconds of face before the estimate is trusted (CALIBRATING until then)
    segment_s: float = 0.4  # length of the stretch the median is taken over
    recompute_s: float = 0.25  # re-search the window this often
    improve_margin: float = 0.5  # energy units a new stretch must beat the current one by
    # energy scales (IOD units): what counts as one unit of "not relaxed"
    lip_gap_scale: float = 0.03
    mouth_width_scale: float = 0.05
    eye_scale: float = 0.05
    brow_scale: float = 0.03
    motion_scale: float = 0.02
    # Closed-lips prior: a relaxed mouth is closed for nearly everyone. When even the most relaxed
    # stretch has the lips apart by more than this (a driver holding an open smile since the first
    # frame), the neutral's lower face is lifted until they meet at `relaxed_lip_gap`, so mouth
    # opening transfers from the start instead of only after he first closes his mouth.
    max_relaxed_lip_gap: float = 0.05
    relaxed_lip_gap: float = 0.015


def close_lips(c: np.ndarray, max_gap: float, relaxed_gap: float) -> np.ndarray:
    """``c`` with the lower face lifted so the inner lips are ``relaxed_gap`` apart, when they are
    more than ``max_gap`` apart; else ``c``. A jaw opening moves the lower lip and chin down together
    and the jaw line less towards the ears: the lift is full below the mouth near the midline and
    fades to 0 at |x| = 0.9 IOD."""
    gap = float(c[_UPPER_INNER_LIP, 1] - c[_LOWER_INNER_LIP, 1])
    if gap <= max_gap:
        return c
    out = np.array(c, np.float32, copy=True)
    centre_x = 0.5 * (c[_MOUTH_CORNERS[0], 0] + c[_MOUTH_CORNERS[1], 0])
    line_y = 0.5 * (c[_UPPER_INNER_LIP, 1] + c[_LOWER_INNER_LIP, 1])
    below = c[:, 1] < line_y
    w = np.clip(1.0 - np.abs(c[:, 0] - centre_x) / 0.9, 0.0, 1.0) * below
    # points between the lip line and the lower lip rise in proportion to how far below it they are
    depth = np.clip((line_y - c[:, 1]) / max(gap / 2, 1e-6), 0.0, 1.0)
    out[:, 1] += ((gap - relaxed_gap) * w * depth).astype(np.float32)
    return out


def shape_signals(c: np.ndarray) -> np.ndarray:
    """(..., 478, 3) → (..., 4): lip gap, mouth width, mean eye opening (gap / width), brow height."""
    c = np.asarray(c, np.float64)
    gap = np.abs(c[..., _UPPER_INNER_LIP, 1] - c[..., _LOWER_INNER_LIP, 1])
    width = np.linalg.norm(c[..., _MOUTH_CORNERS[0], :] - c[..., _MOUTH_CORNERS[1], :], axis=-1)
    eyes = []
    for (a, b), lids in _EYES:
        w = np.linalg.norm(c[..., a, :] - c[..., b, :], axis=-1)
        g = np.mean([c[..., u, 1] - c[..., lo, 1] for u, lo in lids], axis=0)
        eyes.append(g / np.maximum(w, 1e-6))
    brow = c[..., list(_BROWS), 1].mean(-1) - c[..., list(_EYE_LINE), 1].mean(-1)
    return np.stack([gap, width, 0.5 * (eyes[0] + eyes[1]), brow], axis=-1)


class OnlineNeutralEstimator:
    """Feed every face frame with its capture time; read ``estimate`` (a NeutralFace or None).

    ``converged`` turns true once ``settle_s`` of face has been seen and stays true; ``estimate``
    may still change afterwards, but only towards a clearly more relaxed face (``improved`` counts
    the changes)."""

    def __init__(self, config: OnlineNeutralConfig = OnlineNeutralConfig(), source: str = "online"):
        self.config = config
        self.source = source
        self._t: deque[float] = deque()
        self._shapes: deque[np.ndarray] = deque()
        self._sig: deque[np.ndarray] = deque()
        self._estimate = None
        self._energy = np.inf  # energy of the stretch the current estimate came from
        self._motion = 0.0  # that stretch's mouth-motion term
        self._raw: np.ndarray | None = None  # that stretch's median before the closed-lips prior
        self._converged = False
        self._face_s = 0.0
        self._last_t: float | None = None
        self._last_search: float | None = None
        self.frames_seen = 0
        self.improved = 0

    @property
    def converged(self) -> bool:
        return self._converged

    @property
    def estimate(self):
        return self._estimate

    @property
    def frames_collected(self) -> int:
        return len(self._shapes)

    @property
    def energy(self) -> float:
        return float(self._energy)

    def update(self, canonical: np.ndarray, t_s: float):
        """Adds one face frame captured at ``t_s`` seconds (any monotonic origin); returns the
        current estimate (None until there is one). Non-finite shapes are ignored."""

        canonical = np.asarray(canonical, dtype=np.float32)
        if canonical.shape != SHAPE or not np.isfinite(canonical).all() or not np.isfinite(t_s):
            return self._estimate
        cfg = self.config
        self.frames_seen += 1
        if self._last_t is not None:
            dt = t_s - self._last_t
            if dt < 0:  # a clock step backwards: start the window again rather than mis-order it
                self._t.clear(), self._shapes.clear(), self._sig.clear()
            else:
                self._face_s += min(dt, 0.5)  # a gap (face lost) counts at most half a second
        if self._estimate is None:
            self._estimate = NeutralFace(canonical, 1, 1, method="first-frame", source=self.source)
        if not self._t or t_s - self._t[-1] >= cfg.sample_period_s * 0.95 or t_s < self._t[-1]:
            self._t.append(t_s)
            self._shapes.append(canonical)
            self._sig.append(shape_signals(canonical))
            while self._t and self._t[0] < t_s - cfg.window_s:
                self._t.popleft(), self._shapes.popleft(), self._sig.popleft()
        self._last_t = t_s
        if self._last_search is None or t_s - self._last_search >= cfg.recompute_s or t_s < self._last_search:
            self._last_search = t_s
            self._search()
        if not self._converged and self._face_s >= cfg.settle_s:
            self._converged = True
            log.debug("online neutral settled after %.2f s of face (energy %.2f)", self._face_s, self._energy)
        return self._estimate

    def frame_energy(self, signals: np.ndarray, eye_open_ref: float, brow_ref: float, width_ref: float) -> np.ndarray:
        cfg = self.config
        s = np.atleast_2d(signals)
        return (s[:, 0] / cfg.lip_gap_scale
                + np.maximum(s[:, 1] - width_ref, 0.0) / cfg.mouth_width_scale
                + np.maximum(eye_open_ref - s[:, 2], 0.0) / cfg.eye_scale
                + np.abs(s[:, 3] - brow_ref) / cfg.brow_scale)

    def _search(self) -> None:

        cfg = self.config
        n = len(self._t)
        if n < 2:
            return
        t = np.fromiter(self._t, np.float64, n)
        sig = np.array(self._sig)
        eye_ref = float(np.quantile(sig[:, 2], 0.9))
        brow_ref = float(np.median(sig[:, 3]))
        width_ref = float(sig[:, 1].min())
        if self._converged and self._estimate is not None:
            # References never drift towards a held expression: a 30 s smile raises the window's
            # narrowest mouth, a held squint lowers its open-eye level, held brows move its median;
            # against the settled neutral's own values none of them looks relaxed.
            cur = shape_signals(self._estimate.canonical)
            width_ref = min(width_ref, float(cur[1]))
            eye_ref = max(eye_ref, float(cur[2]))
            brow_ref = float(cur[3])
        e = self.frame_energy(sig, eye_ref, brow_ref, width_ref)
        # Stretches of segment_s seconds ending at every stored frame (cumulative sums: O(n)).
        lo = np.searchsorted(t, t - cfg.segment_s, side="left")
        span = np.arange(n) - lo + 1
        ok = (t - t[lo] >= 0.7 * cfg.segment_s) | (t[-1] - t[0] < cfg.segment_s)
        if not ok.any():
            return
        ce = np.r_[0.0, np.cumsum(e)]
        cg, cg2 = np.r_[0.0, np.cumsum(sig[:, 0])], np.r_[0.0, np.cumsum(sig[:, 0] ** 2)]
        mean_e = (ce[1:] - ce[lo]) / span
        mg = (cg[1:] - cg[lo]) / span
        motion = np.sqrt(np.maximum((cg2[1:] - cg2[lo]) / span - mg ** 2, 0.0)) / cfg.motion_scale
        score = np.where(ok, mean_e + motion, np.inf)
        best = int(np.argmin(score))
        # Within the stretch only its calmer half: a blink inside an otherwise relaxed stretch is
        # common and must not half-close the neutral's eyes.
        idx = np.arange(lo[best], best + 1)
        idx = idx[e[idx] <= np.median(e[idx]) + 1e-9]
        shapes = np.array([self._shapes[i] for i in idx])
        candidate = np.median(shapes, axis=0).astype(np.float32)
        raw_candidate = candidate
        candidate = close_lips(candidate, cfg.max_relaxed_lip_gap, cfg.relaxed_lip_gap)
        # The current estimate re-scored against today's window references, so both are compared
        # on one scale (its stored motion term kept).
        current = np.inf
        if self._estimate is not None and self._estimate.method != "first-frame":
            current = float(self.frame_energy(shape_signals(self._raw), eye_ref, brow_ref,
                                              width_ref)[0]) + self._motion
        cand_energy = float(score[best])
        if self._estimate is None or self._estimate.method == "first-frame" or not self._converged:
            take = cand_energy <= current or not self._converged
        else:
            take = cand_energy < current - cfg.improve_margin
        if take:
            if self._converged:
                self.improved += 1
                log.info("online neutral improved: a more relaxed face (energy %.2f → %.2f)", current, cand_energy)
            self._estimate = NeutralFace(candidate, frames_seen=self.frames_seen, frames_used=len(shapes),
                                         method="most-relaxed-segment", source=self.source)
            self._energy = cand_energy
            self._motion = float(motion[best])
            self._raw = raw_candidate  # scored as seen, not as corrected
