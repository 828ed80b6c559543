"""What one eye (or a mono view) of a frame is drawn with: matrices and the target to draw into.

One definition for every backend: OpenXR fills in the eye's pose and field of view from
`xrLocateViews` (in the session's reference space; the orientation in OpenXR's (x, y, z, w)
order); desktop and headless views leave them None.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class EyeView:
    index: int                    # 0 left (or mono), 1 right
    view: np.ndarray              # world → eye (4, 4) float32
    projection: np.ndarray        # (4, 4) float32
    target: object                # RenderTarget to draw into (already sized; an acquired image in OpenXR)
    position: tuple[float, float, float] | None = None            # metres, reference space
    orientation: tuple[float, float, float, float] | None = None  # x, y, z, w (XrQuaternionf order)
    fov: tuple[float, float, float, float] | None = None          # left, right, up, down (radians)

    @property
    def width(self) -> int:
        return self.target.width

    @property
    def height(self) -> int:
        return self.target.height
