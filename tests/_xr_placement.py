"""Placing a render node's avatars in front of wherever Monado's simulated head looks."""
from __future__ import annotations

import numpy as np

from geometry import transforms


def place_before_head(node, frame, eye, offsets) -> None:
    """Avatar i goes ``offsets[i]`` = (x, z) metres from the head of this eye's view (z < 0 is
    ahead); the frame's model matrices are recomputed with the new placements."""
    head = np.linalg.inv(eye.view.astype(np.float64)).astype(np.float32)
    for avatar, (dx, dz) in zip(node.avatars, offsets):
        avatar.placement = head @ transforms.translation(dx, 0.0, dz)
    node.begin_frame(frame)
