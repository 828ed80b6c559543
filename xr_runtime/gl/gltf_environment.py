"""glTF 2.0 environments (the scene file's `environment: {kind: gltf, path}`), drawn as static
world-space geometry with the room's lit shader.

What is read: every mesh instance of the default scene (node transforms applied, times the
environment scale), triangle primitives with POSITION, NORMAL (flat normals computed when absent),
indices (or none), and the material's baseColorFactor. A *simple* baseColorTexture (PNG/JPEG,
embedded or beside the file, with TEXCOORD_0) is sampled once per vertex at load time and folded
into the vertex colour: environments are backdrops, and this keeps one shader and one draw per
environment. Textures with detail finer than the mesh's vertices therefore appear blurred.
Anything else (skins, animations, other primitive modes, optional extensions) is skipped with a
log line; a file that *requires* an extension we do not decode (Draco, meshopt) is refused.

The file is validated before anything is allocated (core.gltf_document: container, schema, every
index, node trees, sizes and strides against their views, buffer URIs confined to the file's
folder); what it makes is bounded too (`MAX_VERTICES` over all instances). `check_environment`
runs those checks alone, so the render node refuses a bad environment before it opens sockets.

The environment replaces the built-in room (sky stays). `make_scene_renderer` returns a Renderer
whose room pass draws the environment instead, so it sits in the depth buffer before the avatars
are blended in.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from OpenGL import GL

from core.errors import HeadcastError
from core.gltf_document import FLOAT, UNSIGNED_BYTE, UNSIGNED_INT, UNSIGNED_SHORT, GltfDocument, GltfDocumentError
from geometry import transforms
from xr_runtime.gl.renderer import Renderer, SceneStyle, upload_room_mesh
from xr_runtime.scene.room_geometry import FLOATS_PER_VERTEX

log = logging.getLogger(__name__)

# Vertices the environment may expand to over all its mesh instances (40 bytes each on the GPU).
MAX_VERTICES = 4 << 20
_FLOATISH = (FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, 5120, 5122)


class GltfEnvironmentError(HeadcastError, ValueError):
    pass


@dataclass(frozen=True)
class EnvironmentMesh:
    vertices: np.ndarray   # (N, FLOATS_PER_VERTEX) float32: position, normal, linear colour, grid flag 0
    indices: np.ndarray    # (M, 3) uint32


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # glTF is column-major
    m = transforms.identity()
    if "translation" in node:
        m = m @ transforms.translation(*node["translation"])
    if "rotation" in node:
        q = np.asarray(node["rotation"], dtype=np.float64)
        n = float(np.linalg.norm(q))
        if n > 0:  # a zero quaternion is no rotation (the spec wants unit ones; exporters round)
            m = m @ transforms.quaternion_to_matrix(q / n)  # glTF stores xyzw, like OpenXR
    if "scale" in node:
        m = m @ transforms.scaling(*node["scale"])
    return m


def _flat_normals(positions: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unshare vertices so each triangle gets its face normal."""
    tri = positions[indices]                                  # (M, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    flat_idx = indices.reshape(-1)
    return positions[flat_idx], np.repeat(n, 3, axis=0), np.arange(flat_idx.size, dtype=np.uint32).reshape(-1, 3)


def _open(path: Path) -> GltfDocument:
    try:
        return GltfDocument.open(Path(path))
    except GltfDocumentError as exc:
        raise GltfEnvironmentError(str(exc)) from None


def _triangle_primitives(doc: GltfDocument) -> list[tuple[np.ndarray, dict]]:
    """(world matrix, primitive) for every drawable primitive instance, within the vertex budget."""
    out, vertices = [], 0
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # absurd transforms end as "not finite" errors
            instances = doc.scene_nodes(_node_matrix)
    except GltfDocumentError as exc:
        raise GltfEnvironmentError(str(exc)) from None
    for node_index, world in instances:
        mesh = doc.json["nodes"][node_index].get("mesh")
        if mesh is None:
            continue
        for prim in doc.json["meshes"][mesh]["primitives"]:
            if prim.get("mode", 4) != 4 or "POSITION" not in prim["attributes"]:
                log.info("%s: skipping a primitive of mode %s", doc.path, prim.get("mode"))
                continue
            n = doc.json["accessors"][prim["indices"]]["count"] if "indices" in prim \
                else doc.json["accessors"][prim["attributes"]["POSITION"]]["count"]
            vertices += n
            if vertices > MAX_VERTICES:
                raise GltfEnvironmentError(f"{doc.path}: the scene expands to more than {MAX_VERTICES} vertices")
            out.append((world, prim))
    return out


def check_environment(path: Path) -> None:
    """Every check that does not read buffer data (the render node runs it before it starts)."""
    doc = _open(path)
    if not _triangle_primitives(doc):
        raise GltfEnvironmentError(f"{path}: no triangle meshes in its default scene")


def load_environment(path: Path, scale: float = 1.0) -> list[EnvironmentMesh]:
    """Every triangle mesh of the default scene, in world space (metres), ready to upload.

    Whatever is wrong with the file is a `GltfEnvironmentError` naming it, never a raw exception."""
    if not (np.isfinite(scale) and 0 < scale < 1e6):
        raise GltfEnvironmentError(f"{path}: environment scale {scale} is not a positive finite number")
    doc = _open(path)
    root = transforms.scaling(scale).astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow becomes a "not finite" error below
        out = [_primitive(doc, prim, root @ world) for world, prim in _triangle_primitives(doc)]
    if not out:
        raise GltfEnvironmentError(f"{path}: no triangle meshes in its default scene")
    return out


def _image(doc: GltfDocument, texture_index: int) -> np.ndarray | None:
    import cv2

    texture = doc.json["textures"][texture_index]
    if "source" not in texture:
        return None
    try:
        raw = doc.image_bytes(texture["source"])
    except GltfDocumentError as exc:
        raise GltfEnvironmentError(str(exc)) from None
    if not raw:
        return None
    bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _primitive(doc: GltfDocument, prim: dict, world: np.ndarray) -> EnvironmentMesh:
    attrs = prim["attributes"]
    try:
        positions = doc.accessor(attrs["POSITION"], (FLOAT,), ("VEC3",), "POSITION").astype(np.float32)
        if "indices" in prim:
            indices = doc.accessor(prim["indices"], (UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT), ("SCALAR",),
                                   "indices").reshape(-1).astype(np.uint32)
        else:
            indices = np.arange(len(positions), dtype=np.uint32)
        uv = (doc.accessor(attrs["TEXCOORD_0"], _FLOATISH, ("VEC2",), "TEXCOORD_0").astype(np.float32)
              if "TEXCOORD_0" in attrs else None)
        normals_in = (doc.accessor(attrs["NORMAL"], (FLOAT,), ("VEC3",), "NORMAL").astype(np.float64)
                      if "NORMAL" in attrs else None)
    except GltfDocumentError as exc:
        raise GltfEnvironmentError(str(exc)) from None
    if not np.isfinite(positions).all():
        raise GltfEnvironmentError(f"{doc.path}: POSITION holds non-finite values")
    if indices.size % 3 or indices.size == 0 or int(indices.max()) >= len(positions):
        raise GltfEnvironmentError(f"{doc.path}: bad triangle indices")
    for name, arr in (("TEXCOORD_0", uv), ("NORMAL", normals_in)):
        if arr is not None and len(arr) != len(positions):
            raise GltfEnvironmentError(f"{doc.path}: {name} has {len(arr)} elements, POSITION {len(positions)}")
    indices = indices.reshape(-1, 3)
    colour = np.ones((len(positions), 3), dtype=np.float32)
    material = doc.json["materials"][prim["material"]] if "material" in prim else None
    pbr = material.get("pbrMetallicRoughness") if material is not None else None
    if pbr is not None and "baseColorFactor" in pbr:
        colour *= np.asarray(pbr["baseColorFactor"][:3], dtype=np.float32)  # glTF factors are linear
    if pbr is not None and "baseColorTexture" in pbr and uv is not None:
        image = _image(doc, pbr["baseColorTexture"]["index"])
        if image is not None:
            uv = np.nan_to_num(uv, nan=0.0, posinf=0.0, neginf=0.0)
            h, w = image.shape[:2]
            x = np.clip((np.mod(uv[:, 0], 1.0) * w).astype(int), 0, w - 1)
            y = np.clip((np.mod(uv[:, 1], 1.0) * h).astype(int), 0, h - 1)  # glTF v runs down the image
            colour *= _srgb_to_linear(image[y, x])
    world = world.astype(np.float64)
    world_pos = ((world[:3, :3] @ positions.T.astype(np.float64)).T + world[:3, 3]).astype(np.float32)
    if not np.isfinite(world_pos).all():
        raise GltfEnvironmentError(f"{doc.path}: positions are not finite once transformed")
    if normals_in is not None:
        try:
            normal_matrix = np.linalg.inv(world[:3, :3]).T
        except np.linalg.LinAlgError:
            raise GltfEnvironmentError(f"{doc.path}: a node transform is singular (zero scale)") from None
        normals = (normal_matrix @ normals_in.T).T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
        normals = np.nan_to_num(normals)
    else:
        order = indices.reshape(-1)
        world_pos, normals, indices = _flat_normals(world_pos, indices)
        colour = colour[order]
    vertices = np.zeros((len(world_pos), FLOATS_PER_VERTEX), dtype=np.float32)
    vertices[:, 0:3], vertices[:, 3:6], vertices[:, 6:9] = world_pos, normals, colour
    return EnvironmentMesh(vertices, indices)


class EnvironmentRenderer(Renderer):
    """A Renderer whose room pass draws glTF environment meshes instead of the built-in room."""

    def __init__(self, meshes: list[EnvironmentMesh], style: SceneStyle | None = None) -> None:
        super().__init__(style)
        self._env: list[tuple[int, list[int], int]] = []
        for mesh in meshes:
            self._env.append(upload_room_mesh(mesh.vertices, mesh.indices))

    def _draw_room(self, view_proj: np.ndarray) -> None:
        # Same program and uniforms as the room (super sets them up), different geometry.
        room_vao, room_count = self._room_vao, self._room_index_count
        for vao, _, count in self._env:
            self._room_vao, self._room_index_count = vao, count
            try:
                super()._draw_room(view_proj)
            finally:
                self._room_vao, self._room_index_count = room_vao, room_count

    def close(self) -> None:
        for vao, buffers, _ in self._env:
            GL.glDeleteBuffers(len(buffers), buffers)
            GL.glDeleteVertexArrays(1, [vao])
        self._env = []
        super().close()


def make_scene_renderer(environment) -> Renderer:
    """The renderer for a scene's `Environment`: built-in room, sky only ("empty"), or glTF."""
    if environment.kind == "empty":
        return Renderer(SceneStyle(show_room=False))
    if environment.kind == "gltf":
        return EnvironmentRenderer(load_environment(environment.path, environment.scale))
    return Renderer()
