"""The personal whole-head mesh: face triangulation + procedural closure + UV atlas layout.

Every render vertex is a fixed linear function of the 468 tracked face points:
``positions(face) = neutral_positions + face_map @ (face - neutral_face)``. Blendshapes, per-frame
tracked meshes and the exported morph targets all go through this one map, so they agree.

UV atlas (glTF convention: U right, V down, image row 0 at V = 0): the face as seen from the
camera fills the top ~80 % of the atlas at high texel density, flattened cylindrically around the
skull axis so the cheeks are not squeezed; the back of the head is a strip along the bottom (one
column per boundary vertex, one row per ring; a seam column duplicates the first).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.head_model.head_closure import ClosureConfig, HeadShape, build_cap, fit_head_shape
from inference.head_model.topology import NUM_MESH_POINTS, triangulate_face


@dataclass(frozen=True)
class AtlasLayout:
    margin: float = 0.01
    face_v_max: float = 0.80  # the face occupies V in [margin, face_v_max]
    cap_v_min: float = 0.83  # the back of the head occupies V in [cap_v_min, 1 - margin]
    # Rows of the cap strip per ring ∝ (1 - t)^(cap_v_power - 1): 1 spaces rings evenly; above 1 gives
    # the rings next to the face (hair and ears the camera sees) more texels than the inferred back.
    cap_v_power: float = 1.0

    @property
    def split(self) -> float:
        """V between the face and the cap strip (each is hole-filled from its own texels)."""
        return 0.5 * (self.face_v_max + self.cap_v_min)


# The whole head (head_shell.py): the cap carries hair, ears and outline, so it gets a third of
# the atlas, its rows concentrated next to the face.
WHOLE_HEAD_LAYOUT = AtlasLayout(face_v_max=0.64, cap_v_min=0.67, cap_v_power=1.8)


@dataclass
class HeadMesh:
    positions: np.ndarray  # (V, 3) float32, neutral, canonical units
    uvs: np.ndarray  # (V, 2) float32, glTF convention
    faces: np.ndarray  # (F, 3) int64, counter-clockwise seen from outside
    face_map: np.ndarray  # (V, 468) float32
    neutral_face: np.ndarray  # (468, 3) float32
    n_face_triangles: int  # faces[:n_face_triangles] are the tracked face, the rest the closure
    atlas_split: float = AtlasLayout().split  # V between face and cap strips (AtlasLayout.split)

    def deform(self, face_points: np.ndarray) -> np.ndarray:
        """Render-vertex positions for tracked face points (..., 468, 3) in canonical units."""
        delta = face_points[..., :NUM_MESH_POINTS, :] - self.neutral_face
        return self.positions + np.einsum("vj,...jc->...vc", self.face_map, delta)


def flatten(points: np.ndarray, shape: HeadShape) -> np.ndarray:
    """Cylindrical unrolling around the vertical skull axis: (arc length, height)."""
    dx = points[:, 0] - shape.centre[0]
    dz = points[:, 2] - shape.centre[2]
    return np.stack([shape.radii[0] * np.arctan2(dx, dz), points[:, 1]], axis=1)


def build_head_mesh(neutral: np.ndarray, uv_shape: np.ndarray, closure: ClosureConfig = ClosureConfig(),
                    layout: AtlasLayout = AtlasLayout(), radius_fn=None) -> HeadMesh:
    """neutral: personal neutral face (≥468, 3); uv_shape: the same face with mouth and eyes open,
    which sets the triangulation and face UVs (gives the mouth interior texture area). ``radius_fn``:
    the closure's surface (a fitted ``HeadShell.radius``; None: the procedural skull)."""
    neutral = np.asarray(neutral, dtype=np.float64)[:NUM_MESH_POINTS]
    uv_shape = np.asarray(uv_shape, dtype=np.float64)[:NUM_MESH_POINTS]
    shape = fit_head_shape(neutral)
    flat = flatten(uv_shape, shape)
    faces, boundary = triangulate_face(flat)

    # Face UVs: fit the flattened face into its box, keeping aspect.
    lo, hi = flat.min(0), flat.max(0)
    box_w = 1.0 - 2 * layout.margin
    box_h = layout.face_v_max - layout.margin
    s = min(box_w / (hi[0] - lo[0]), box_h / (hi[1] - lo[1]))
    u = 0.5 + (flat[:, 0] - 0.5 * (lo[0] + hi[0])) * s
    v = layout.margin + (hi[1] - flat[:, 1]) * s
    face_uv = np.stack([u, v], axis=1)

    cap, follow, _ = build_cap(neutral, boundary, closure, radius_fn)  # (R+1, B, 3)
    n_rings, n_b = cap.shape[0], cap.shape[1]
    cols = np.arange(n_b + 1) % n_b  # seam: last column repeats the first boundary vertex
    cap_pos = cap[:, cols]  # (R+1, B+1, 3)
    cap_u = layout.margin + (1 - 2 * layout.margin) * np.arange(n_b + 1) / n_b
    ring_t = np.arange(n_rings) / (n_rings - 1)
    ring_t = 1.0 - (1.0 - ring_t) ** layout.cap_v_power
    cap_v = layout.cap_v_min + (1 - layout.margin - layout.cap_v_min) * ring_t
    cap_uv = np.stack(np.meshgrid(cap_u, cap_v), axis=-1)  # (R+1, B+1, 2)

    base = NUM_MESH_POINTS
    def vid(r: int, j: int) -> int:
        return base + r * (n_b + 1) + j

    cap_faces = []
    for r in range(n_rings - 1):
        for j in range(n_b):
            a, b, c, d = vid(r, j), vid(r, j + 1), vid(r + 1, j), vid(r + 1, j + 1)
            cap_faces.append((a, b, d))
            if r + 1 < n_rings - 1:  # the last ring is the pole: its quads are triangles
                cap_faces.append((a, d, c))

    positions = np.concatenate([neutral, cap_pos.reshape(-1, 3)]).astype(np.float32)
    uvs = np.concatenate([face_uv, cap_uv.reshape(-1, 2)]).astype(np.float32)
    cap_faces = np.array(cap_faces, dtype=np.int64)
    # Orient closure triangles outwards (away from the skull centre).
    tri = positions[cap_faces]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    inward = (normal * (tri.mean(1) - shape.centre)).sum(-1) < 0
    cap_faces[inward] = cap_faces[inward][:, [0, 2, 1]]
    # Face triangles are CCW in the flattened (arc, height) domain, seen from the front: outward.
    all_faces = np.concatenate([faces, cap_faces])

    face_map = np.zeros((len(positions), NUM_MESH_POINTS), dtype=np.float32)
    face_map[np.arange(base), np.arange(base)] = 1.0
    for r in range(n_rings):
        for j in range(n_b + 1):
            face_map[vid(r, j), boundary[cols[j]]] = follow[r]
    return HeadMesh(positions, uvs, all_faces, face_map, neutral.astype(np.float32), len(faces), layout.split)
