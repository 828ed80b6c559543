"""glTF 2.0 environments (the scene file's `environment: {kind: gltf, path}`), drawn as static
world-space geometry with the room's lit shader.

What is read: every mesh instance of the default scene (node transforms applied, times the
environment scale), triangle primitives with POSITION, NORMAL (flat normals computed when absent),
indices (or none), and the material's baseColorFactor. A *simple* baseColorTexture (PNG/JPEG,
embedded or beside the file, with TEXCOORD_0) is sampled once per vertex at load time and folded
into the vertex colour: environments are backdrops, and this keeps one shader and one draw per
environment. Textures with detail finer than the mesh's vertices therefore appear blurred.
Anything else (skins, animations, other primitive modes, KHR extensions) is skipped with a log line.

The environment replaces the built-in room (sky stays). `make_scene_renderer` returns a Renderer
whose room pass draws the environment instead, so it sits in the depth buffer before the avatars
are blended in.
"""
from __future__ import annotations

import base64
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from OpenGL import GL

from core.errors import HeadcastError
from geometry import transforms
from xr_runtime.gl.renderer import Renderer, SceneStyle, upload_room_mesh
from xr_runtime.scene.room_geometry import FLOATS_PER_VERTEX

log = logging.getLogger(__name__)

_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {5120: np.int8, 5121: np.uint8, 5122: np.int16, 5123: np.uint16, 5125: np.uint32, 5126: np.float32}
_NORMALISE = {5121: 255.0, 5123: 65535.0, 5120: 127.0, 5122: 32767.0}


class GltfEnvironmentError(HeadcastError, ValueError):
    pass


@dataclass(frozen=True)
class EnvironmentMesh:
    vertices: np.ndarray   # (N, FLOATS_PER_VERTEX) float32: position, normal, linear colour, grid flag 0
    indices: np.ndarray    # (M, 3) uint32


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = c.astype(np.float32) / 255.0
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


class _GltfReader:
    def __init__(self, path: Path) -> None:
        import pygltflib

        self.path = Path(path)
        try:
            self.gltf = pygltflib.GLTF2().load(str(self.path))
        except Exception as exc:
            raise GltfEnvironmentError(f"{path}: not a readable glTF file ({exc})") from exc
        if self.gltf is None:
            raise GltfEnvironmentError(f"{path}: not a readable glTF file")
        self._buffers: dict[int, bytes] = {}

    def buffer(self, index: int) -> bytes:
        if index not in self._buffers:
            buf = self.gltf.buffers[index]
            if buf.uri is None:
                data = self.gltf.binary_blob()
            elif buf.uri.startswith("data:"):
                data = base64.b64decode(buf.uri.split(",", 1)[1])
            else:
                data = (self.path.parent / buf.uri).read_bytes()
            if data is None or len(data) < buf.byteLength:
                raise GltfEnvironmentError(f"{self.path}: buffer {index} is shorter than declared")
            self._buffers[index] = data
        return self._buffers[index]

    def view_bytes(self, view_index: int) -> tuple[bytes, int, int | None]:
        view = self.gltf.bufferViews[view_index]
        data = self.buffer(view.buffer)
        start = view.byteOffset or 0
        return data[start:start + view.byteLength], 0, view.byteStride

    def accessor(self, index: int) -> np.ndarray:
        acc = self.gltf.accessors[index]
        dtype = np.dtype(_DTYPES[acc.componentType])
        width = _COMPONENTS[acc.type]
        if acc.bufferView is None:
            return np.zeros((acc.count, width), dtype=np.float32)
        data, _, stride = self.view_bytes(acc.bufferView)
        offset = acc.byteOffset or 0
        item = dtype.itemsize * width
        stride = stride or item
        if offset + stride * (acc.count - 1) + item > len(data):
            raise GltfEnvironmentError(f"{self.path}: accessor {index} runs past its buffer view")
        raw = np.lib.stride_tricks.as_strided(
            np.frombuffer(data, dtype=np.uint8, offset=offset), shape=(acc.count, item), strides=(stride, 1))
        out = np.ascontiguousarray(raw).view(dtype).reshape(acc.count, width)
        if acc.normalized and acc.componentType in _NORMALISE:
            out = out.astype(np.float32) / _NORMALISE[acc.componentType]
        return out

    def image(self, texture_index: int) -> np.ndarray | None:
        import cv2

        texture = self.gltf.textures[texture_index]
        if texture.source is None:
            return None
        img = self.gltf.images[texture.source]
        if img.bufferView is not None:
            raw, _, _ = self.view_bytes(img.bufferView)
        elif img.uri and img.uri.startswith("data:"):
            raw = base64.b64decode(img.uri.split(",", 1)[1])
        elif img.uri:
            raw = (self.path.parent / img.uri).read_bytes()
        else:
            return None
        bgr = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
        return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _node_matrix(node) -> np.ndarray:
    if node.matrix:
        return np.asarray(node.matrix, dtype=np.float32).reshape(4, 4).T  # glTF is column-major
    m = transforms.identity()
    if node.translation:
        m = m @ transforms.translation(*node.translation)
    if node.rotation:
        m = m @ transforms.quaternion_to_matrix(node.rotation)  # glTF stores xyzw, like OpenXR
    if node.scale:
        m = m @ transforms.scaling(*node.scale)
    return m


def _flat_normals(positions: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unshare vertices so each triangle gets its face normal."""
    tri = positions[indices]                                  # (M, 3, 3)
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    flat_idx = indices.reshape(-1)
    return positions[flat_idx], np.repeat(n, 3, axis=0), np.arange(flat_idx.size, dtype=np.uint32).reshape(-1, 3)


def load_environment(path: Path, scale: float = 1.0) -> list[EnvironmentMesh]:
    """Every triangle mesh of the default scene, in world space (metres), ready to upload.

    Whatever is wrong with the file is a `GltfEnvironmentError` naming it, never a raw exception:
    a field of the wrong type or an index out of range deep inside pygltflib's objects included."""
    try:
        return _load_environment(Path(path), scale)
    except GltfEnvironmentError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError, OverflowError) as exc:
        raise GltfEnvironmentError(f"{path}: malformed glTF ({type(exc).__name__}: {exc})") from exc


def _load_environment(path: Path, scale: float) -> list[EnvironmentMesh]:
    reader = _GltfReader(path)
    gltf = reader.gltf
    scene_index = gltf.scene if gltf.scene is not None else 0
    if not gltf.scenes:
        raise GltfEnvironmentError(f"{path}: no scenes")
    root = transforms.scaling(scale)
    out: list[EnvironmentMesh] = []
    stack = [(n, root) for n in gltf.scenes[scene_index].nodes or []]
    while stack:
        node_index, parent = stack.pop()
        node = gltf.nodes[node_index]
        world = parent @ _node_matrix(node)
        stack += [(child, world) for child in node.children or []]
        if node.mesh is None:
            continue
        for prim in gltf.meshes[node.mesh].primitives:
            mesh = _primitive(reader, prim, world)
            if mesh is not None:
                out.append(mesh)
    if not out:
        raise GltfEnvironmentError(f"{path}: no triangle meshes in scene {scene_index}")
    return out


def _primitive(reader: _GltfReader, prim, world: np.ndarray) -> EnvironmentMesh | None:
    if prim.mode not in (None, 4) or prim.attributes.POSITION is None:
        log.info("%s: skipping a primitive of mode %s", reader.path, prim.mode)
        return None
    positions = reader.accessor(prim.attributes.POSITION).astype(np.float32)[:, :3]
    indices = (reader.accessor(prim.indices).reshape(-1) if prim.indices is not None
               else np.arange(len(positions))).astype(np.uint32)
    if indices.size % 3 or indices.size == 0 or int(indices.max()) >= len(positions):
        raise GltfEnvironmentError(f"{reader.path}: bad triangle indices")
    indices = indices.reshape(-1, 3)
    colour = np.ones((len(positions), 3), dtype=np.float32)
    material = reader.gltf.materials[prim.material] if prim.material is not None else None
    pbr = material.pbrMetallicRoughness if material is not None else None
    if pbr is not None and pbr.baseColorFactor:
        colour *= np.asarray(pbr.baseColorFactor[:3], dtype=np.float32)  # glTF factors are linear
    if pbr is not None and pbr.baseColorTexture is not None and prim.attributes.TEXCOORD_0 is not None:
        image = reader.image(pbr.baseColorTexture.index)
        if image is not None:
            uv = reader.accessor(prim.attributes.TEXCOORD_0).astype(np.float32)
            h, w = image.shape[:2]
            x = np.clip((np.mod(uv[:, 0], 1.0) * w).astype(int), 0, w - 1)
            y = np.clip((np.mod(uv[:, 1], 1.0) * h).astype(int), 0, h - 1)  # glTF v runs down the image
            colour *= _srgb_to_linear(image[y, x])
    world_pos = (world[:3, :3] @ positions.T).T + world[:3, 3]
    if prim.attributes.NORMAL is not None:
        normal_matrix = np.linalg.inv(world[:3, :3].astype(np.float64)).T
        normals = (normal_matrix @ reader.accessor(prim.attributes.NORMAL).astype(np.float64).T).T
        normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
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
