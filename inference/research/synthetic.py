"""Synthetic stand-in data for development, tests and the ablation harness — never for a real avatar.

A hidden expression state e(t) drives both a target avatar's latent z(t) and any number of
"drivers'" features, so cross-driver transfer can be measured against ground truth:

* e(t) has slow components (jaw, smile, brows: smoothed random walks with held poses) and fast,
  sparse events (blinks: 3-5 frame pulses).
* The target's z = tanh(A · [e, ė]) + small noise: a fixed random nonlinear map that also depends
  on the expression's *velocity* (hysteresis-like detail: the same mouth shape looks different
  opening than closing), which one frame cannot see but a window can.
* Some of z depends on ``hidden`` states that features never show (tongue, teeth, texture-only
  detail): the part the residual encoder exists for.
* A driver's features = gain_p · B_p · φ(e) + neutral offset_p + noise, D = 1434 like mp478, with
  B_p = shared landmark basis perturbed per person (different faces move differently).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SyntheticClip:
    features: np.ndarray  # (N, D) float32
    z: np.ndarray  # (N, Z) float32
    valid: np.ndarray  # (N,) bool
    expression: np.ndarray  # (N, E) hidden ground truth


@dataclass(frozen=True)
class SyntheticWorld:
    """The fixed maps shared by a target avatar and all drivers of one experiment."""

    seed: int = 0
    n_expr: int = 10
    n_hidden: int = 2
    z_dim: int = 32
    feature_dim: int = 1434

    def _rng(self, salt: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, salt])

    def expressions(self, n: int, clip_seed: int) -> np.ndarray:
        """(n, n_expr + n_hidden) smooth expression trajectories with held poses and blinks."""
        rng = np.random.default_rng([self.seed, 1000 + clip_seed])
        e_dim = self.n_expr + self.n_hidden
        out = np.zeros((n, e_dim))
        for k in range(e_dim):
            if k in (0, 1):  # blink-like channels: sparse fast pulses
                t = 0
                while t < n:
                    t += int(rng.integers(20, 80))
                    width = int(rng.integers(3, 6))
                    if t + width < n:
                        out[t:t + width, k] = np.sin(np.linspace(0, np.pi, width))
                continue
            # Piecewise targets (held expressions) smoothed by a critically damped follower.
            x, v, target = 0.0, 0.0, 0.0
            for t in range(n):
                if rng.random() < 0.04:
                    target = float(rng.normal(0, 1.0)) if rng.random() < 0.7 else 0.0
                a = 0.08 * (target - x) - 0.45 * v
                v += a
                x += v
                out[t, k] = x
        return out

    def target_z(self, e: np.ndarray, noise: float = 0.02) -> np.ndarray:
        rng = self._rng(1)
        vel = np.vstack([np.zeros((1, e.shape[1])), np.diff(e, axis=0)])
        inp = np.concatenate([e, 4.0 * vel], axis=1)
        a = rng.normal(0, 1.0 / np.sqrt(inp.shape[1]), (inp.shape[1], self.z_dim))
        # Hidden states (never in the features) carry a minor share of z, as in real avatars
        # where texture-only detail is a small part of the latent's variance.
        hidden = np.r_[np.arange(self.n_expr, e.shape[1]), e.shape[1] + np.arange(self.n_expr, e.shape[1])]
        a[hidden] *= 0.35
        z = np.tanh(inp @ a + rng.normal(0, 0.1, self.z_dim))
        z += np.random.default_rng([self.seed, 7, len(e)]).normal(0, noise, z.shape)
        return z.astype(np.float32)

    def driver_features(self, e: np.ndarray, person: int, noise: float = 0.02) -> np.ndarray:
        """Features of driver ``person`` (0 = the target themself) showing expressions e."""
        shared = self._rng(2)
        visible = e[:, : self.n_expr]
        # φ(e): mildly nonlinear landmark response (lips stretch saturates, jaw is near linear).
        phi = np.concatenate([visible, 0.3 * np.tanh(2 * visible), 0.2 * visible ** 2], axis=1)
        basis = shared.normal(0, 1.0 / np.sqrt(phi.shape[1]), (phi.shape[1], self.feature_dim))
        pr = self._rng(100 + person)
        if person:
            basis = basis * (1.0 + pr.normal(0, 0.15, basis.shape)) + pr.normal(0, 0.05, basis.shape)
            gain = float(np.exp(pr.normal(0, 0.2)))
            offset = pr.normal(0, 0.08, self.feature_dim)
        else:
            gain, offset = 1.0, np.zeros(self.feature_dim)
        x = gain * (phi @ basis) + offset
        x += pr.normal(0, noise, x.shape)
        return (0.2 * x).astype(np.float32)  # mp478-like magnitudes

    def clip(self, n: int, person: int = 0, clip_seed: int = 0, invalid_fraction: float = 0.03) -> SyntheticClip:
        e = self.expressions(n, clip_seed)
        rng = np.random.default_rng([self.seed, 2000 + clip_seed])
        valid = np.ones(n, bool)
        # Occlusions come in stretches (a hand over the mouth), not single frames.
        n_bad = int(invalid_fraction * n)
        while n_bad > 0:
            length = min(n_bad, int(rng.integers(3, 12)))
            start = int(rng.integers(0, max(1, n - length)))
            valid[start:start + length] = False
            n_bad -= length
        return SyntheticClip(self.driver_features(e, person), self.target_z(e), valid, e)
