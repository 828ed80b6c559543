"""mesh.glb: the neutral head, UVs, neutral texture and the blendshapes as glTF 2.0 morph targets.

Written with pygltflib so Blender, three.js or any glTF loader opens it; read back here for the
runtime (positions, uvs, uint32 indices, (K, V, 3) morph deltas).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pygltflib as g

from core.atomic_files import atomic_write_bytes
from core.errors import HeadcastError

FLOAT, UINT32 = g.FLOAT, g.UNSIGNED_INT


@dataclass
class MeshArrays:
    positions: np.ndarray  # (V, 3) float32, metres
    uvs: np.ndarray  # (V, 2) float32, glTF convention (V down)
    indices: np.ndarray  # (F, 3) uint32
    blendshapes: np.ndarray  # (K, V, 3) float32 position deltas per unit weight, metres


class GltfError(HeadcastError, ValueError):
    """mesh.glb cannot be written or read back as the runtime needs it."""


def write_glb(path: Path, mesh: MeshArrays, texture_rgb: np.ndarray | None = None, mode: int | None = None) -> None:
    """Writes the glb atomically (core.atomic_files); ``mode``: its permission bits (default: umask)."""
    blob = bytearray()
    views: list[g.BufferView] = []
    accessors: list[g.Accessor] = []

    def add(arr: np.ndarray, kind: str, ctype: int, target: int | None, minmax: bool = False) -> int:
        data = np.ascontiguousarray(arr).tobytes()
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(data), target=target))
        blob.extend(data)
        acc = g.Accessor(bufferView=len(views) - 1, componentType=ctype, count=int(arr.shape[0]), type=kind)
        if minmax:
            acc.min = [float(v) for v in arr.min(0)]
            acc.max = [float(v) for v in arr.max(0)]
        accessors.append(acc)
        return len(accessors) - 1

    pos = add(mesh.positions.astype(np.float32), g.VEC3, FLOAT, g.ARRAY_BUFFER, True)
    uv = add(mesh.uvs.astype(np.float32), g.VEC2, FLOAT, g.ARRAY_BUFFER)
    idx = add(mesh.indices.astype(np.uint32).reshape(-1), g.SCALAR, UINT32, g.ELEMENT_ARRAY_BUFFER)
    targets = [g.Attributes(POSITION=add(d.astype(np.float32), g.VEC3, FLOAT, g.ARRAY_BUFFER, True))
               for d in mesh.blendshapes]
    prim = g.Primitive(attributes=g.Attributes(POSITION=pos, TEXCOORD_0=uv), indices=idx, targets=targets or None)
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="headcast build-avatar"),
        scene=0, scenes=[g.Scene(nodes=[0])], nodes=[g.Node(mesh=0, name="head")],
        meshes=[g.Mesh(name="head", primitives=[prim], weights=[0.0] * len(targets) or None,
                       extras={"targetNames": [f"bs{k:02d}" for k in range(len(targets))]})],
    )
    if texture_rgb is not None:
        ok, png = cv2.imencode(".png", np.ascontiguousarray(texture_rgb[:, :, ::-1]))
        if not ok:
            raise GltfError("could not encode the neutral texture")
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(png)))
        blob.extend(png.tobytes())
        gltf.images = [g.Image(bufferView=len(views) - 1, mimeType="image/png")]
        gltf.samplers = [g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR)]
        gltf.textures = [g.Texture(sampler=0, source=0)]
        gltf.materials = [g.Material(name="head", pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=0), metallicFactor=0.0, roughnessFactor=0.8))]
        prim.material = 0
    gltf.accessors = accessors
    gltf.bufferViews = views
    gltf.buffers = [g.Buffer(byteLength=len(blob))]
    gltf.set_binary_blob(bytes(blob))
    parts = gltf.save_to_bytes()
    if not parts:
        raise GltfError(f"{Path(path).name}: pygltflib produced no glTF binary")
    atomic_write_bytes(Path(path), b"".join(parts), mode=mode)


def read_glb(path: Path) -> MeshArrays:
    try:
        gltf = g.GLTF2().load_binary(str(path))
    except Exception as exc:  # pygltflib raises assorted errors on damaged files
        raise GltfError(f"{path.name}: not a readable glTF binary ({exc.__class__.__name__}: {exc})") from exc
    if gltf is None or not gltf.meshes or not gltf.meshes[0].primitives:
        raise GltfError(f"{path.name}: holds no mesh")
    blob = gltf.binary_blob()
    if blob is None:
        raise GltfError(f"{path.name}: has no binary chunk")
    prim = gltf.meshes[0].primitives[0]

    def get(i: int | None, what: str) -> np.ndarray:
        if i is None:
            raise GltfError(f"{path.name}: primitive has no {what}")
        acc = gltf.accessors[i]
        view = gltf.bufferViews[acc.bufferView]
        dtype = {FLOAT: np.float32, UINT32: np.uint32}.get(acc.componentType)
        if dtype is None:
            raise GltfError(f"{path.name}: {what} has unsupported component type {acc.componentType}")
        width = {g.SCALAR: 1, g.VEC2: 2, g.VEC3: 3}[acc.type]
        start = view.byteOffset + (acc.byteOffset or 0)
        n = acc.count * width
        if start + n * np.dtype(dtype).itemsize > len(blob):
            raise GltfError(f"{path.name}: {what} runs past the end of the binary chunk")
        return np.frombuffer(blob, dtype=dtype, count=n, offset=start).reshape(acc.count, width) if width > 1 \
            else np.frombuffer(blob, dtype=dtype, count=n, offset=start).copy()

    pos = get(prim.attributes.POSITION, "POSITION").copy()
    uv = get(prim.attributes.TEXCOORD_0, "TEXCOORD_0").copy()
    idx = get(prim.indices, "indices").reshape(-1, 3).astype(np.uint32)
    # pygltflib hands morph targets back as plain dicts after loading.
    targets = [get(t["POSITION"] if isinstance(t, dict) else t.POSITION, f"morph target {k}")
               for k, t in enumerate(prim.targets or [])]
    bs = np.stack(targets).astype(np.float32) if targets else np.zeros((0,) + pos.shape, np.float32)
    if idx.size and int(idx.max()) >= len(pos):
        raise GltfError(f"{path.name}: triangle indices exceed the vertex count")
    return MeshArrays(pos, uv, idx, bs)
