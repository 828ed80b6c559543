"""FaceMesh connectivity: the face triangulation and its boundary loops.

MediaPipe ships its tessellation only as an incomplete edge list (3-cliques of it give 854
triangles with non-manifold edges, not the 898 of the canonical model), so the face is
triangulated here: Delaunay in a flattened 2-D domain (the same domain the UV atlas uses), which
guarantees a planar, fold-free parametrisation. The flattening is taken from a shape with open
mouth and eyes, so triangles spanning the lips and eyelids get UV area for the mouth interior and
eyeballs, which live in the dynamic texture.
"""
from __future__ import annotations

from collections import defaultdict

import cv2
import numpy as np

NUM_MESH_POINTS = 468  # FaceMesh without the 10 iris points (they move with gaze, not with the skin)


def face_oval_loop() -> np.ndarray:
    """FaceMesh's FACEMESH_FACE_OVAL as one ordered loop of vertex indices."""
    import mediapipe as mp  # the constants live in the wheel; imported lazily like the tracker

    edges = list(mp.solutions.face_mesh.FACEMESH_FACE_OVAL)
    return _order_loop(edges)


def _order_loop(edges: list[tuple[int, int]]) -> np.ndarray:
    nbr: dict[int, list[int]] = defaultdict(list)
    for a, b in edges:
        nbr[a].append(b)
        nbr[b].append(a)
    start = min(nbr)
    loop, prev, cur = [start], -1, start
    while True:
        nxt = [n for n in nbr[cur] if n != prev]
        if not nxt or nxt[0] == start:
            break
        prev, cur = cur, nxt[0]
        loop.append(cur)
        if len(loop) > len(nbr):
            raise ValueError("edge set is not a simple loop")
    return np.array(loop, dtype=np.int64)


def delaunay(points2d: np.ndarray) -> np.ndarray:
    """Delaunay triangles (F, 3) of distinct 2-D points, counter-clockwise in (x, y)."""
    pts = np.asarray(points2d, dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    span = float((hi - lo).max())
    # Subdiv2D wants float32 points inside an integer rectangle: rescale to a big grid.
    scaled = (pts - lo) / span * 10000.0 + 10.0
    subdiv = cv2.Subdiv2D((0, 0, 10020, 10020))
    for p in scaled:
        subdiv.insert((float(p[0]), float(p[1])))
    tris = subdiv.getTriangleList().reshape(-1, 3, 2)
    out = []
    for t in tris:
        d = np.linalg.norm(scaled[None, :, :] - t[:, None, :], axis=2)  # (3, N)
        idx = d.argmin(1)
        if (d[np.arange(3), idx] > 1e-2).any() or len(set(idx.tolist())) < 3:
            continue  # touches one of Subdiv2D's virtual outer vertices
        out.append(idx)
    faces = np.array(out, dtype=np.int64)
    return orient_ccw(pts, faces)


def orient_ccw(points2d: np.ndarray, faces: np.ndarray) -> np.ndarray:
    p = points2d[faces]
    cross = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 1, 1] - p[:, 0, 1]) * (p[:, 2, 0] - p[:, 0, 0])
    faces = faces.copy()
    flip = cross < 0
    faces[flip] = faces[flip][:, [0, 2, 1]]
    return faces


def point_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    poly = polygon.astype(np.float32).reshape(-1, 1, 2)
    return np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in points])


def triangulate_face(flat2d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(faces (F, 3) CCW in the flat domain, boundary loop) for the 468 mesh points.

    Triangles whose centroid lies outside the face oval are dropped (Delaunay fills the convex hull).
    The boundary returned is the one of the resulting triangulation, ordered consistently with
    the triangles (the mesh interior lies to the left of the loop direction).
    """
    flat2d = np.asarray(flat2d[:NUM_MESH_POINTS], dtype=np.float64)
    faces = delaunay(flat2d)
    oval = face_oval_loop()
    centroids = flat2d[faces].mean(1)
    keep = point_in_polygon(centroids, flat2d[oval])
    faces = faces[keep]
    return faces, boundary_loop(faces)


def boundary_loop(faces: np.ndarray) -> np.ndarray:
    """The longest boundary loop, following directed half-edges (a→b of a CCW triangle)."""
    count: dict[tuple[int, int], int] = defaultdict(int)
    for f in faces:
        for i in range(3):
            a, b = int(f[i]), int(f[(i + 1) % 3])
            count[(min(a, b), max(a, b))] += 1
    nxt: dict[int, int] = {}
    for f in faces:
        for i in range(3):
            a, b = int(f[i]), int(f[(i + 1) % 3])
            if count[(min(a, b), max(a, b))] == 1:
                nxt[a] = b
    loops, seen = [], set()
    for s in nxt:
        if s in seen:
            continue
        loop, cur = [], s
        while cur not in seen and cur in nxt:
            seen.add(cur)
            loop.append(cur)
            cur = nxt[cur]
        loops.append(loop)
    if not loops:
        raise ValueError("triangulation has no boundary")
    return np.array(max(loops, key=len), dtype=np.int64)
