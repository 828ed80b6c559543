"""How a surface's learned edge-on alpha is seen from a viewpoint (the whole head's soft outline,
inference/head_model/alpha_atlas.py): the transparency learned where the camera saw the surface
edge-on applies in full edge-on and fades out as the surface turns to face the viewer. One place
for the constants, so the GL shader (defines), the software renderer and the builder agree."""
from __future__ import annotations

import numpy as np

# |cos| (surface normal · direction to the viewer) below the first value: the learned transparency
# in full; above the second: opaque. A head's outline is seen at |cos| ≲ 0.3.
EDGE_COS = (0.15, 0.6)
# Fragments at or above this alpha are drawn in the opaque pass (they write depth); 254.5 / 255.
OPAQUE_ALPHA = 254.5 / 255.0


def edge_fade(cos: np.ndarray) -> np.ndarray:
    """1 edge-on, 0 face-on: 1 − smoothstep(EDGE_COS[0], EDGE_COS[1], |cos|)."""
    lo, hi = EDGE_COS
    t = np.clip((np.abs(cos) - lo) / (hi - lo), 0.0, 1.0)
    return 1.0 - t * t * (3.0 - 2.0 * t)


def view_alpha(edge_on_alpha: np.ndarray, cos: np.ndarray) -> np.ndarray:
    """Alpha as seen: the edge-on alpha in [0, 1] applied by how edge-on the surface is."""
    return 1.0 - (1.0 - np.asarray(edge_on_alpha, np.float32)) * edge_fade(cos)
