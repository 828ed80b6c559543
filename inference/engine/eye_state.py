"""The driver's eyes as the avatar should perform them: lid closure per eye and gaze per eye.

Read straight off the newest good frame's mp478 features (gain · (face − driver's neutral), lids
range-normalised on the capture side so that a full closure is a lid-gap change of
``EYE_GAP_STD``): closure = −Δgap / (gain · EYE_GAP_STD) and gaze = the iris centre's displacement
relative to the eye corners' midpoint, in standard half eye widths. Why outside the network: on the
sample woman's clip both eyes only ever close together and together with a crying mouth, so no
basis or latent learned from it can close one eye, and measured end to end the network moved her
lids through a quarter of the driver's range (issue 13). The renderer performs these directly
(``xr_runtime.avatars.eyelids``): geometry for the lids, a texture offset for the irises.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from geometry.facemesh_eyes import eyes_from_features


@dataclass(frozen=True)
class EyeState:
    closure: np.ndarray  # (2,) right, left: 0 = the driver's relaxed opening, 1 = lids together
    gaze: np.ndarray  # (2, 2) right, left × (x towards the subject's left, y up), half eye widths

    @classmethod
    def relaxed(cls) -> "EyeState":
        return cls(np.zeros(2, np.float32), np.zeros((2, 2), np.float32))

    def faded(self, presence: float) -> "EyeState":
        """Towards the relaxed eyes as presence drops (like the latent fades to the neutral face)."""
        p = float(np.clip(presence, 0.0, 1.0))
        return EyeState((self.closure * p).astype(np.float32), (self.gaze * p).astype(np.float32))


def eye_state_from_features(features: np.ndarray, gain: float) -> EyeState:
    closure, gaze = eyes_from_features(features, gain)
    return EyeState(closure.astype(np.float32), gaze.astype(np.float32))
