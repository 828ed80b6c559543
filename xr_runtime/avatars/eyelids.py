"""Eyes the avatar can perform: an eyelid rig per eye and an iris (gaze) offset in the texture.

Measured before (issue 13): driven by the sample man, the woman's quick avatar never blinked (her
tracked opening stayed 0.19-0.27 while his went 0.32 → 0.02) and the left eye sat at 0.05-0.18:
her clip only ever closes both eyes together, with a crying mouth, so neither her blendshape basis
nor her latent space holds a blink or a wink. The rig is built from her own mesh instead:

* **Lids**: two extra blendshapes, one per eye, that bring every upper-lid vertex to its lower-lid
  partner (upper lid 75 % of the way, lower 25 %, like a real blink) and pull the lid-crease and
  under-eye rings along by 30 % so the skin stretches smoothly. Her own lid skin then covers the
  eye: a closed lid *is* a lid, not a darker eye. Each frame the weight is solved so that the lid
  gap of the network's deformed mesh becomes the driver's opening: ``gap = (1 − closure) ·
  OPEN_RATIO · eye width`` — per eye, so a wink closes one eye, and a half closure or a squint is
  the same solve at other closures. The network's own (coupled, smile-narrowed) lids are overruled.
* **Gaze**: the fragment shader samples the texture at ``uv − w · M · gaze`` inside each eye's
  opening (an ellipse in the eye's own axes; ``w`` falls to 0 at its border so the lid skin does
  not tear), where ``M`` maps half eye widths to UV: the iris and pupil move in the socket. The
  offset is scaled by (1 − closure) and the closing lids cover the opening anyway: the blink hides it.

Needs the builder's head mesh (its first 468 vertices are FaceMesh points); other meshes get no rig.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from geometry.facemesh_eyes import EYES, mid_pairs

from .mesh import MAX_BLENDSHAPES, AvatarMeshData

# Rings next to the lids (FaceMesh), pulled along with the lid (crease above, under-eye below).
_CREASE = {"right": (247, 30, 29, 27, 28, 56, 190), "left": (467, 260, 259, 257, 258, 286, 414)}
_UNDER = {"right": (25, 110, 24, 23, 22, 26, 112), "left": (255, 339, 254, 253, 252, 256, 341)}
UPPER_SHARE = 0.75
RING_SHARE = 0.3
# Opening (lid gap / eye width) the rig gives a relaxed open eye: both sample faces measure
# 0.28-0.34 relaxed; one value for both eyes keeps an asymmetric mesh neutral from showing.
OPEN_RATIO = 0.30
# A shut lid goes this far past meeting (the upper lid tucks over the lower, as real lids do):
# measured: 1.15 made the tracked closed right eye 0.14 instead of 0.12 and eye r 0.85 instead of 0.89, so 1.
CLOSE_OVERSHOOT = 1.0
# Iris offset on the avatar per unit of driver gaze (x, y; both in half eye widths). Measured on the
# gaze sweep (gaze r x / y; quick | full): 1.0 → 0.77 / 0.83 | 0.54 / 0.86; 0.6 → 0.87 / 0.84 |
# 0.75 / 0.76; 1.4 → 0.70 / 0.88 | 0.16 / 0.86; (0.5, 1.0) → 0.86 / 0.89 | 0.73 / 0.81 (chosen);
# (0.4, 1.0) → 0.87 / 0.91 | 0.71 / 0.82. Larger horizontal offsets push the iris into the
# blurred corners, where the tracker on the avatar loses it.
GAZE_GAIN = (0.5, 1.0)
# A shutting lid shows skin, not the texture's eye opening (which need not line up with the
# mesh's lid line: on both sample builds it did not, and the stretched lid band showed lashes,
# iris and a dark outer corner — a slit, tracked 0.12-0.20): from closure 0.5 on, inside an
# ellipse of LID_SKIN_X × 0.75 half eye widths, the upper half is sampled LID_SKIN_SHIFT half eye
# widths further up and the lower half LID_SKIN_BELOW × that further down. Measured (cross eval,
# right / left eye r, range share; quick | full avatar):
#   no shift            0.89 / 0.89, 54 / 107 %  |  0.73 / 0.93, 41 / 56 %
#   0.2 up only         0.97 / 0.86, 75 /  97 %  |  —
#   0.2 up + down, 1.0  0.97 / 0.90, 77 / 112 %  |  0.83 / 0.97, 53 / 85 %
#   same, x 1.3         0.97 / 0.90, 84 / 121 %  |  0.89 / 0.97, 63 / 93 %   ← chosen
#   same, x 1.6         0.98 / 0.89, 87 / 114 %  |  0.87 / 0.97, 57 / 91 %
# (0.3 instead of 0.2: slightly worse on both.)
LID_SKIN_SHIFT = 0.2
LID_SKIN_X = 1.3
LID_SKIN_BELOW = 1.0
# The ellipse the gaze offset acts in, half eye widths (x along the eye, y across), fading from 55 %
# of it outwards. Measured on the gaze sweep at gain (0.5, 1.0), gaze r x / y (quick | full):
# (0.80, 0.42) → 0.86 / 0.89 | 0.73 / 0.81; (0.95, 0.42) → 0.86 / 0.89 | 0.85 / 0.90;
# (0.80, 0.55) → 0.87 / 0.90 | 0.82 / 0.92; (0.95, 0.55) → 0.87 / 0.91 | 0.91 / 0.96 (chosen);
# (1.10, 0.50) → 0.87 / 0.87 | 0.92 / 0.92. Too small an ellipse compressed the iris against its
# border instead of moving it.
GAZE_ELLIPSE = (0.95, 0.55)
# The eye region drawn from her relaxed open-eyed texture (Renderer.set_eye_texture): opening, lids
# and crease, soft over the outer quarter.
EYE_REGION = (1.25, 0.85)


@dataclass(frozen=True)
class EyeUV:
    centre: np.ndarray  # (2,) UV of the eye opening's centre
    axes: np.ndarray  # (2, 2) columns: UV of one half eye width towards the subject's left, and up


class EyelidRig:
    """Built once per avatar mesh; ``mesh`` is the mesh with the two lid shapes appended."""

    def __init__(self, mesh: AvatarMeshData, deltas: np.ndarray, eyes_uv: dict[str, EyeUV]):
        self.base_count = mesh.blendshape_count
        self.mesh = replace(mesh, blendshapes=np.concatenate([mesh.blendshapes, deltas], axis=0))
        self.eyes_uv = eyes_uv
        self._deltas = deltas
        ids = sorted({v for side in EYES.values() for v in (*side[0], *side[1], *side[2])})
        self._ids = np.array(ids)
        self._pos = mesh.positions[self._ids].astype(np.float64)
        self._basis = mesh.blendshapes[:, self._ids].astype(np.float64)  # (K, n, 3)
        self._row = {v: i for i, v in enumerate(ids)}
        self._g0 = {}
        for k, side in enumerate(("right", "left")):
            upper, lower = EYES[side][0], EYES[side][1]
            # gap change per unit weight (mid pairs, y): exactly minus the neutral gap
            d = deltas[k]
            self._g0[side] = float(-np.mean([d[u, 1] - d[lo, 1] for u, lo in mid_pairs(upper, lower)]))

    @classmethod
    def for_mesh(cls, mesh: AvatarMeshData) -> "EyelidRig | None":
        """The rig, or None for a mesh that is not a FaceMesh head (or has no room for 2 shapes)."""
        if mesh.vertex_count < 468 or mesh.blendshape_count + 2 > MAX_BLENDSHAPES:
            return None
        p = mesh.positions.astype(np.float64)
        deltas = np.zeros((2, mesh.vertex_count, 3), np.float32)
        eyes_uv = {}
        for k, side in enumerate(("right", "left")):
            upper, lower, corners, _ = EYES[side]
            gaps = np.array([p[u, 1] - p[lo, 1] for u, lo in zip(upper, lower)])
            width = np.linalg.norm(p[corners[0]] - p[corners[1]])
            mid_gap = np.mean([p[u, 1] - p[lo, 1] for u, lo in mid_pairs(upper, lower)])
            if not (width > 0 and mid_gap > 0.02 * width and (gaps > -0.05 * width).all()):
                return None  # not lids in FaceMesh order: leave this mesh alone
            for i, (u, lo) in enumerate(zip(upper, lower)):
                meet = UPPER_SHARE * p[lo] + (1 - UPPER_SHARE) * p[u]
                deltas[k, u] = meet - p[u]
                deltas[k, lo] = meet - p[lo]
                deltas[k, _CREASE[side][i]] = RING_SHARE * deltas[k, u]
                deltas[k, _UNDER[side][i]] = RING_SHARE * deltas[k, lo]
            uv = mesh.uvs.astype(np.float64)
            lid_ids = list(upper) + list(lower)
            centre = uv[lid_ids].mean(0)
            # towards the subject's left: right eye outer → inner corner, left eye inner → outer
            a, b = (corners[0], corners[1]) if side == "right" else (corners[1], corners[0])
            ax = 0.5 * (uv[b] - uv[a])
            up = np.array([ax[1], -ax[0]])
            lid_dir = uv[list(mid_pairs(upper, lower)[1])[0]] - uv[list(mid_pairs(upper, lower)[1])[1]]
            if up @ lid_dir < 0:
                up = -up
            eyes_uv[side] = EyeUV(centre.astype(np.float32), np.stack([ax, up], axis=1).astype(np.float32))
        return cls(mesh, deltas, eyes_uv)

    def lid_weights(self, weights: np.ndarray, closure: np.ndarray) -> np.ndarray:
        """The two lid weights that give the driver's per-eye ``closure`` (0 open … 1 shut) on top
        of the network's ``weights``."""
        w = np.asarray(weights, np.float64).reshape(-1)[: self.base_count]
        p = self._pos + np.tensordot(w, self._basis, axes=(0, 0))
        out = np.zeros(2, np.float32)
        for k, side in enumerate(("right", "left")):
            upper, lower, corners, _ = EYES[side]
            r = self._row
            gap = np.mean([p[r[u], 1] - p[r[lo], 1] for u, lo in mid_pairs(upper, lower)])
            width = np.linalg.norm(p[r[corners[0]]] - p[r[corners[1]]])
            c = float(np.clip(closure[k], -0.5, 1.0))
            target = (1.0 - CLOSE_OVERSHOOT * c) * OPEN_RATIO * width
            out[k] = np.clip((gap - target) / max(self._g0[side], 1e-9), -0.8, 1.2)
        return out

    def gaze_uv(self, gaze: np.ndarray, closure: np.ndarray) -> np.ndarray:
        """(2, 2) UV offsets per eye for the shader."""
        out = np.zeros((2, 2), np.float32)
        for k, side in enumerate(("right", "left")):
            open_ = 1.0 - float(np.clip(closure[k], 0.0, 1.0))
            out[k] = self.eyes_uv[side].axes @ (np.asarray(GAZE_GAIN) * open_ * np.asarray(gaze[k], np.float64))
        return out
