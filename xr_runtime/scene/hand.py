"""A hand that can grab avatars: a tracked controller (OpenXR) or the desktop's simulated one.

Its own module, below every producer of hands (the OpenXR input, the desktop's mouse hand) and
the grab logic that consumes them, so none of them imports another.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HandState:
    active: bool                       # a controller is bound and its pose is valid
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)   # metres, the session's reference space
    orientation: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 1.0)  # x, y, z, w (OpenXR order)
    squeeze: float = 0.0               # 0 … 1


INACTIVE = HandState(active=False)
