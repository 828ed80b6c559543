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


# ARKit's gaze weights at 1.0 are the iris offsets expr52 measures full scale (inference.features.
# expr52.FULL_SCALE: look_x 0.25, look_y 0.15 eye widths), here in half eye widths.
_LOOK_X, _LOOK_Y = 0.5, 0.3


def eye_state_from_expr52(weights: np.ndarray) -> EyeState:
    """The eyes of an ARKit-52 frame (effective weights, ``inference.features.expr52``): blinks are
    the closures, eyeLook* the gaze. Taken from the named weights themselves rather than from the
    avatar's mp478 features after the kind map: the map is a linear fit over the target's own frames,
    in which both eyes only close together, so it cannot carry a wink or a gaze (issue 13)."""
    from inference.features.expr52_names import ARKIT52

    w = dict(zip(ARKIT52, np.clip(np.asarray(weights, np.float32).reshape(-1), 0.0, 1.0)))
    closure = np.array([w["eyeBlinkRight"], w["eyeBlinkLeft"]], np.float32)
    gaze = np.array([[(w["eyeLookInRight"] - w["eyeLookOutRight"]) * _LOOK_X,
                      (w["eyeLookUpRight"] - w["eyeLookDownRight"]) * _LOOK_Y],
                     [(w["eyeLookOutLeft"] - w["eyeLookInLeft"]) * _LOOK_X,
                      (w["eyeLookUpLeft"] - w["eyeLookDownLeft"]) * _LOOK_Y]], np.float32)
    return EyeState(closure, gaze)
