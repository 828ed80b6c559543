"""mesh.glb: the neutral head, UVs, neutral texture and the blendshapes as glTF 2.0 morph targets.

Written with pygltflib so Blender, three.js or any glTF loader opens it; read back here for the
runtime (positions, uvs, uint32 indices, (K, V, 3) morph deltas).

An avatar with a torso (head_model/torso.py) is a glTF skin of two joints: ``body`` (the root, at
the origin) and ``neck`` (its child, at the neck pivot: the head turns about it). The head's
vertices are weighted between them (WEIGHTS_0: the neck's base follows the body, the face the
neck); the torso is a second mesh node with its own texture, all on ``body``. Rotating ``neck`` in
Blender or three.js turns the head over still shoulders, as the render node does. The runtime
reads the body weight back (``MeshArrays.body_weight``) and the torso (``MeshArrays.torso``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pygltflib as g

from core.atomic_files import atomic_write_bytes
from core.errors import HeadcastError
from core.gltf_document import GltfDocument, GltfDocumentError, GltfLimits

FLOAT, UINT32 = g.FLOAT, g.UNSIGNED_INT


@dataclass
class MeshArrays:
    positions: np.ndarray  # (V, 3) float32, metres
    uvs: np.ndarray  # (V, 2) float32, glTF convention (V down)
    indices: np.ndarray  # (F, 3) uint32
    blendshapes: np.ndarray  # (K, V, 3) float32 position deltas per unit weight, metres
    # Extra morph targets for other tools, after the K runtime ones: name → (V, 3) deltas (the
    # builder writes the ARKit-named shapes the avatar has). The runtime never reads them back.
    named_targets: dict = field(default_factory=dict)
    # An avatar with a torso: how much each vertex follows the body rather than the head (V,), the
    # neck pivot (metres) the head turns about, and the torso itself.
    body_weight: np.ndarray | None = None
    pivot: np.ndarray | None = None
    torso: "TorsoArrays | None" = None


@dataclass
class TorsoArrays:
    positions: np.ndarray  # (T, 3) float32, metres, at rest
    uvs: np.ndarray  # (T, 2) float32
    indices: np.ndarray  # (F, 3) uint32
    texture: np.ndarray  # (S, S, 3) uint8 RGB


def smooth_normals(positions: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals, averaged over vertices at the same position, so UV seams
    (split vertices) do not show as creases. (V, 3) float32, unit length (+z where undefined)."""
    p = np.asarray(positions, np.float64)
    f = np.asarray(indices, np.int64).reshape(-1, 3)
    fn = np.cross(p[f[:, 1]] - p[f[:, 0]], p[f[:, 2]] - p[f[:, 0]])  # length = 2 × area
    n = np.zeros_like(p)
    for c in range(3):
        np.add.at(n, f[:, c], fn)
    _, group = np.unique(np.round(p, 6), axis=0, return_inverse=True)
    group = group.reshape(-1)
    summed = np.zeros((group.max() + 1 if len(group) else 0, 3))
    np.add.at(summed, group, n)
    n = summed[group]
    length = np.linalg.norm(n, axis=1, keepdims=True)
    n = np.where(length > 1e-20, n / np.maximum(length, 1e-20), np.array([0.0, 0.0, 1.0]))
    return n.astype(np.float32)


class GltfError(HeadcastError, ValueError):
    """mesh.glb cannot be written or read back as the runtime needs it."""


SOFT_BELOW = 250  # a triangle whose texels reach below this alpha (of 255) gets an outline fringe
FRINGE_M = 0.003  # how far the fringe stands off the head (metres): the soft band beyond its outline


def soft_triangles(uvs: np.ndarray, indices: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles whose texture alpha, sampled at their corners, edge midpoints and
    centre (nearest texel), falls below SOFT_BELOW anywhere."""
    tri = uvs[indices.reshape(-1, 3)].astype(np.float64)  # (F, 3, 2)
    pts = np.concatenate([tri, 0.5 * (tri + tri[:, [1, 2, 0]]), tri.mean(1, keepdims=True)], 1)
    h, w = alpha.shape
    col = np.clip((pts[..., 0] * w).astype(int), 0, w - 1)
    row = np.clip((pts[..., 1] * h).astype(int), 0, h - 1)
    return alpha[row, col].min(1) < SOFT_BELOW


def write_glb(path: Path, mesh: MeshArrays, texture_rgb: np.ndarray | None = None, mode: int | None = None) -> None:
    """``texture_rgb``: (S, S, 3) RGB, or (S, S, 4) RGBA with the learned alpha.
    Writes the glb atomically (core.atomic_files); ``mode``: its permission bits (default: umask).

    With an alpha, the head itself is opaque (material "head", OPAQUE: glTF ignores the alpha
    there) and a second primitive carries the learned outline: the soft triangles again, pushed
    FRINGE_M out along the normals, with their own morph targets (material "head outline", BLEND,
    the same texture). Seen face-on the fringe lies over the same hair and vanishes; at the
    silhouette it is the soft band beyond the opaque edge. glTF has no view-dependent alpha, and
    the two obvious encodings fail in a real viewer (three.js in headless Chromium,
    tests/test_gltf_threejs.py): one BLEND primitive for the whole head is drawn without depth
    writes, so the head's own triangles cover each other in index order (the inside of the back
    of the head over the face); an opaque head plus a BLEND outline on the head's own surface
    shows the background through the hair wherever that outline is seen face-on (the closed
    head has nothing behind it but its culled inside)."""
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
    # Smooth normals: without them three.js and Blender shade the head faceted.
    normals = smooth_normals(mesh.positions, mesh.indices)
    nrm = add(normals, g.VEC3, FLOAT, g.ARRAY_BUFFER)
    uv = add(mesh.uvs.astype(np.float32), g.VEC2, FLOAT, g.ARRAY_BUFFER)
    idx = add(mesh.indices.astype(np.uint32).reshape(-1), g.SCALAR, UINT32, g.ELEMENT_ARRAY_BUFFER)
    names = [f"bs{k:02d}" for k in range(len(mesh.blendshapes))] + list(mesh.named_targets)
    deltas = list(mesh.blendshapes) + [np.asarray(d, np.float32) for d in mesh.named_targets.values()]
    targets = [g.Attributes(POSITION=add(d.astype(np.float32), g.VEC3, FLOAT, g.ARRAY_BUFFER, True))
               for d in deltas]
    skinned = mesh.body_weight is not None
    if skinned:
        # Joint 0 = body, 1 = neck (the skin's order); UNSIGNED_BYTE joints, weights summing to 1.
        bw = np.clip(np.asarray(mesh.body_weight, np.float32).reshape(-1), 0, 1)
        joints = np.zeros((len(bw), 4), np.uint8)
        joints[:, 1] = bw < 1.0  # a joint with zero weight must be 0 (glTF 2.0, 3.7.3.3)
        weights = np.zeros((len(bw), 4), np.float32)
        weights[:, 0], weights[:, 1] = bw, 1.0 - bw
    head_attrs = dict(POSITION=pos, NORMAL=nrm, TEXCOORD_0=uv)
    if skinned:
        head_attrs.update(JOINTS_0=add(joints, g.VEC4, g.UNSIGNED_BYTE, g.ARRAY_BUFFER),
                          WEIGHTS_0=add(weights, g.VEC4, FLOAT, g.ARRAY_BUFFER))
    prim = g.Primitive(attributes=g.Attributes(**head_attrs), indices=idx, targets=targets or None)
    prims = [prim]
    if texture_rgb is not None and texture_rgb.shape[2] == 4:
        tris = mesh.indices.astype(np.int64).reshape(-1, 3)
        soft = soft_triangles(mesh.uvs, tris, texture_rgb[..., 3])
        if soft.any():
            used, local = np.unique(tris[soft], return_inverse=True)
            f_pos = add((mesh.positions[used] + FRINGE_M * normals[used]).astype(np.float32), g.VEC3, FLOAT,
                        g.ARRAY_BUFFER, True)
            f_nrm = add(normals[used], g.VEC3, FLOAT, g.ARRAY_BUFFER)
            f_uv = add(mesh.uvs[used].astype(np.float32), g.VEC2, FLOAT, g.ARRAY_BUFFER)
            f_idx = add(local.astype(np.uint32).reshape(-1), g.SCALAR, UINT32, g.ELEMENT_ARRAY_BUFFER)
            f_targets = [g.Attributes(POSITION=add(np.asarray(d, np.float32)[used], g.VEC3, FLOAT, g.ARRAY_BUFFER,
                                                   True)) for d in deltas]
            f_attrs = dict(POSITION=f_pos, NORMAL=f_nrm, TEXCOORD_0=f_uv)
            if skinned:  # every primitive of a skinned mesh carries the skin's attributes
                f_attrs.update(JOINTS_0=add(joints[used], g.VEC4, g.UNSIGNED_BYTE, g.ARRAY_BUFFER),
                               WEIGHTS_0=add(weights[used], g.VEC4, FLOAT, g.ARRAY_BUFFER))
            prims.append(g.Primitive(attributes=g.Attributes(**f_attrs), indices=f_idx, targets=f_targets or None))
    gltf = g.GLTF2(
        asset=g.Asset(version="2.0", generator="headcast build-avatar"),
        scene=0, scenes=[g.Scene(nodes=[0])], nodes=[g.Node(mesh=0, name="head")],
        meshes=[g.Mesh(name="head", primitives=prims, weights=[0.0] * len(targets) or None,
                       # runtimeTargets: the first N targets are the avatar's own blendshapes (what
                       # its decoder's weights drive); the named ones after them are for other tools.
                       extras={"targetNames": names, "runtimeTargets": len(mesh.blendshapes)})],
    )
    if skinned:
        pivot = np.asarray(mesh.pivot if mesh.pivot is not None else np.zeros(3), np.float64).reshape(3)
        inverse_bind = np.stack([np.eye(4), np.eye(4)])
        inverse_bind[1, :3, 3] = -pivot
        ibm = add(inverse_bind.transpose(0, 2, 1).reshape(2, 16).astype(np.float32), g.MAT4, FLOAT, None)
        # Skinned meshes are roots (their own transform is ignored); the joints form the skeleton.
        gltf.nodes = [g.Node(mesh=0, skin=0, name="head"), g.Node(name="body", children=[2]),
                      g.Node(name="neck", translation=[float(v) for v in pivot])]
        gltf.skins = [g.Skin(name="headcast", joints=[1, 2], skeleton=1, inverseBindMatrices=ibm)]
        gltf.scenes = [g.Scene(nodes=[0, 1])]
    if mesh.torso is not None:
        t = mesh.torso
        n_t = len(t.positions)
        t_attrs = dict(POSITION=add(t.positions.astype(np.float32), g.VEC3, FLOAT, g.ARRAY_BUFFER, True),
                       NORMAL=add(smooth_normals(t.positions, t.indices), g.VEC3, FLOAT, g.ARRAY_BUFFER),
                       TEXCOORD_0=add(t.uvs.astype(np.float32), g.VEC2, FLOAT, g.ARRAY_BUFFER))
        if skinned:
            t_w = np.zeros((n_t, 4), np.float32)
            t_w[:, 0] = 1.0
            t_attrs.update(JOINTS_0=add(np.zeros((n_t, 4), np.uint8), g.VEC4, g.UNSIGNED_BYTE, g.ARRAY_BUFFER),
                           WEIGHTS_0=add(t_w, g.VEC4, FLOAT, g.ARRAY_BUFFER))
        t_idx = add(t.indices.astype(np.uint32).reshape(-1), g.SCALAR, UINT32, g.ELEMENT_ARRAY_BUFFER)
        gltf.meshes.append(g.Mesh(name="torso", primitives=[g.Primitive(attributes=g.Attributes(**t_attrs),
                                                                       indices=t_idx)]))
        gltf.nodes.append(g.Node(mesh=1, skin=0 if skinned else None, name="torso"))
        gltf.scenes[0].nodes.append(len(gltf.nodes) - 1)
    def add_texture(rgb: np.ndarray, what: str) -> int:
        """An embedded PNG (RGB, or RGBA whose alpha PNG keeps) as a texture; its index."""
        bgr = rgb[:, :, [2, 1, 0, 3]] if rgb.shape[2] == 4 else rgb[:, :, ::-1]
        ok, png = cv2.imencode(".png", np.ascontiguousarray(bgr))
        if not ok:
            raise GltfError(f"could not encode the {what} texture")
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=len(png)))
        blob.extend(png.tobytes())
        gltf.images.append(g.Image(bufferView=len(views) - 1, mimeType="image/png"))
        if not gltf.samplers:
            gltf.samplers = [g.Sampler(magFilter=g.LINEAR, minFilter=g.LINEAR)]
        gltf.textures.append(g.Texture(sampler=0, source=len(gltf.images) - 1))
        return len(gltf.textures) - 1

    if texture_rgb is not None:
        # RGBA (a whole head's learned alpha): PNG keeps the alpha, the material blends it.
        pbr = dict(baseColorTexture=g.TextureInfo(index=add_texture(texture_rgb, "neutral")), metallicFactor=0.0,
                   roughnessFactor=0.8)
        # OPAQUE ignores the texture's alpha (glTF 2.0, 3.9.4): the face and the solid hair.
        gltf.materials = [g.Material(name="head", pbrMetallicRoughness=g.PbrMetallicRoughness(**pbr),
                                     alphaMode="OPAQUE")]
        prim.material = 0
        if len(prims) > 1:
            gltf.materials.append(g.Material(name="head outline", pbrMetallicRoughness=g.PbrMetallicRoughness(**pbr),
                                             alphaMode="BLEND"))
            prims[1].material = 1
    if mesh.torso is not None:
        tex = add_texture(np.asarray(mesh.torso.texture)[..., :3], "torso")
        gltf.materials.append(g.Material(name="torso", alphaMode="OPAQUE", pbrMetallicRoughness=g.PbrMetallicRoughness(
            baseColorTexture=g.TextureInfo(index=tex), metallicFactor=0.0, roughnessFactor=0.8)))
        gltf.meshes[1].primitives[0].material = len(gltf.materials) - 1
    gltf.accessors = accessors
    gltf.bufferViews = views
    gltf.buffers = [g.Buffer(byteLength=len(blob))]
    gltf.set_binary_blob(bytes(blob))
    parts = gltf.save_to_bytes()
    if not parts:
        raise GltfError(f"{Path(path).name}: pygltflib produced no glTF binary")
    atomic_write_bytes(Path(path), b"".join(parts), mode=mode)


# What an avatar's mesh may be: the builder's heads are ~5 k vertices and 32-64 blendshapes.
MAX_MESH_VERTICES = 1 << 18
MAX_MORPH_TARGETS = 512
MESH_LIMITS = GltfLimits(max_file_bytes=256 << 20, max_buffer_bytes=256 << 20, max_nodes=64)


def read_glb(path: Path) -> MeshArrays:
    """The first primitive of the first mesh (the head; a whole head's outline fringe after it is
    for other viewers), validated (core.gltf_document) before anything is allocated: a tampered
    mesh.glb is a `GltfError`, never a traceback or a huge allocation."""
    path = Path(path)
    try:
        doc = GltfDocument.open(path, MESH_LIMITS)
        if not doc.items("meshes"):
            raise GltfError(f"{path.name}: holds no mesh")
        prim = doc.json["meshes"][0]["primitives"][0]
        attrs = prim["attributes"]
        for name in ("POSITION", "TEXCOORD_0"):
            if name not in attrs:
                raise GltfError(f"{path.name}: primitive has no {name}")
        if "indices" not in prim:
            raise GltfError(f"{path.name}: primitive has no indices")
        n_vertices = doc.json["accessors"][attrs["POSITION"]]["count"]
        targets = prim.get("targets", [])
        if n_vertices > MAX_MESH_VERTICES or len(targets) > MAX_MORPH_TARGETS:
            raise GltfError(f"{path.name}: {n_vertices} vertices and {len(targets)} morph targets; an avatar "
                            f"mesh has at most {MAX_MESH_VERTICES} and {MAX_MORPH_TARGETS}")
        pos = doc.accessor(attrs["POSITION"], (FLOAT,), ("VEC3",), "POSITION").astype(np.float32)
        uv = doc.accessor(attrs["TEXCOORD_0"], (FLOAT,), ("VEC2",), "TEXCOORD_0").astype(np.float32)
        idx = doc.accessor(prim["indices"], (UINT32,), ("SCALAR",), "indices").reshape(-1)
        runtime = doc.json["meshes"][0].get("extras", {}).get("runtimeTargets") if isinstance(
            doc.json["meshes"][0].get("extras"), dict) else None
        if isinstance(runtime, int) and not isinstance(runtime, bool) and 0 <= runtime <= len(targets):
            targets = targets[:runtime]  # named extra targets (ARKit shapes) are not the runtime's
        deltas = []
        for k, target in enumerate(targets):
            if "POSITION" not in target:
                raise GltfError(f"{path.name}: morph target {k} has no POSITION")
            deltas.append(doc.accessor(target["POSITION"], (FLOAT,), ("VEC3",), f"morph target {k}"))
        body_weight, pivot = _read_skin(doc, path, attrs, len(pos))
        torso = _read_torso(doc, path)
    except GltfDocumentError as exc:
        raise GltfError(f"{path.name}: {str(exc).removeprefix(str(path) + ': ')}") from None
    if len(uv) != len(pos) or any(len(d) != len(pos) for d in deltas):
        raise GltfError(f"{path.name}: TEXCOORD_0 or a morph target does not have one element per vertex")
    if idx.size % 3:
        raise GltfError(f"{path.name}: {idx.size} indices do not make whole triangles")
    if idx.size and int(idx.max()) >= len(pos):
        raise GltfError(f"{path.name}: triangle indices exceed the vertex count")
    bs = np.stack(deltas).astype(np.float32) if deltas else np.zeros((0,) + pos.shape, np.float32)
    for name, arr in (("POSITION", pos), ("TEXCOORD_0", uv), ("morph targets", bs)):
        if not np.isfinite(arr).all():
            raise GltfError(f"{path.name}: {name} holds non-finite values")
    return MeshArrays(pos, uv, idx.reshape(-1, 3).astype(np.uint32), bs, body_weight=body_weight, pivot=pivot,
                      torso=torso)


MAX_TORSO_VERTICES = 1 << 16
MAX_TORSO_TEXTURE = 2048


def _read_skin(doc: GltfDocument, path: Path, attrs: dict, n_vertices: int):
    """(body weight (V,), neck pivot (3,)) of a head skinned to ``body`` and ``neck`` (the module
    docstring); (None, None) for a head without a skin."""
    head_node = next((n for n in doc.items("nodes") if n.get("mesh") == 0), None)
    if head_node is None or head_node.get("skin") is None:
        return None, None
    skins = doc.items("skins")
    s = head_node["skin"]
    if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < len(skins):
        raise GltfError(f"{path.name}: the head's skin {s!r} does not exist")
    joints = skins[s].get("joints")
    nodes = doc.items("nodes")
    if (not isinstance(joints, list) or len(joints) != 2
            or not all(isinstance(j, int) and not isinstance(j, bool) and 0 <= j < len(nodes) for j in joints)):
        raise GltfError(f"{path.name}: the head's skin must have two joints, body and neck")
    names = [nodes[j].get("name") for j in joints]
    if names != ["body", "neck"]:
        raise GltfError(f"{path.name}: the head's skin joints are {names}, expected ['body', 'neck']")
    if "JOINTS_0" not in attrs or "WEIGHTS_0" not in attrs:
        raise GltfError(f"{path.name}: a skinned head needs JOINTS_0 and WEIGHTS_0")
    j = doc.accessor(attrs["JOINTS_0"], (g.UNSIGNED_BYTE, g.UNSIGNED_SHORT), ("VEC4",), "JOINTS_0")
    w = doc.accessor(attrs["WEIGHTS_0"], (FLOAT,), ("VEC4",), "WEIGHTS_0").astype(np.float32)
    if len(j) != n_vertices or len(w) != n_vertices:
        raise GltfError(f"{path.name}: JOINTS_0 / WEIGHTS_0 do not have one element per vertex")
    if not np.isfinite(w).all() or (w < 0).any() or (np.abs(w.sum(1) - 1) > 1e-3).any() or (j > 1).any():
        raise GltfError(f"{path.name}: WEIGHTS_0 must be finite, non-negative, sum to 1 over joints 0 and 1")
    body = (w * (j == 0)).sum(1).astype(np.float32)
    t = nodes[joints[1]].get("translation", [0.0, 0.0, 0.0])
    pivot = np.asarray(t, np.float32)
    if pivot.shape != (3,) or not np.isfinite(pivot).all() or np.abs(pivot).max() > 10.0:
        raise GltfError(f"{path.name}: the neck joint's translation must be 3 finite numbers within 10 m")
    return body, pivot


def _read_torso(doc: GltfDocument, path: Path) -> TorsoArrays | None:
    """The mesh named ``torso`` and its texture, validated; None when there is none."""
    meshes = doc.items("meshes")
    which = [i for i, m in enumerate(meshes) if m.get("name") == "torso"]
    if not which:
        return None
    prim = meshes[which[0]]["primitives"][0]
    attrs = prim["attributes"]
    if "POSITION" not in attrs or "TEXCOORD_0" not in attrs or "indices" not in prim:
        raise GltfError(f"{path.name}: the torso needs POSITION, TEXCOORD_0 and indices")
    n = doc.json["accessors"][attrs["POSITION"]]["count"]
    if n > MAX_TORSO_VERTICES:
        raise GltfError(f"{path.name}: the torso has {n} vertices, at most {MAX_TORSO_VERTICES}")
    pos = doc.accessor(attrs["POSITION"], (FLOAT,), ("VEC3",), "torso POSITION").astype(np.float32)
    uv = doc.accessor(attrs["TEXCOORD_0"], (FLOAT,), ("VEC2",), "torso TEXCOORD_0").astype(np.float32)
    idx = doc.accessor(prim["indices"], (UINT32,), ("SCALAR",), "torso indices").reshape(-1)
    if len(uv) != len(pos) or idx.size % 3 or (idx.size and int(idx.max()) >= len(pos)):
        raise GltfError(f"{path.name}: the torso's UVs or triangles do not match its vertices")
    if not (np.isfinite(pos).all() and np.isfinite(uv).all()):
        raise GltfError(f"{path.name}: the torso holds non-finite values")
    mat = prim.get("material")
    materials = doc.items("materials")
    try:
        tex_index = materials[mat]["pbrMetallicRoughness"]["baseColorTexture"]["index"]
        image = doc.items("textures")[tex_index]["source"]
        data = doc.image_bytes(image)
    except (KeyError, IndexError, TypeError):
        raise GltfError(f"{path.name}: the torso has no base colour texture") from None
    head = np.frombuffer(data[:24], np.uint8)
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n":
        raise GltfError(f"{path.name}: the torso's texture is not a PNG")
    w, h = int.from_bytes(bytes(head[16:20]), "big"), int.from_bytes(bytes(head[20:24]), "big")
    if not (1 <= w <= MAX_TORSO_TEXTURE and 1 <= h <= MAX_TORSO_TEXTURE):
        raise GltfError(f"{path.name}: the torso's texture is {w}x{h}, at most {MAX_TORSO_TEXTURE} per side")
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise GltfError(f"{path.name}: the torso's texture does not decode")
    return TorsoArrays(pos, uv, idx.reshape(-1, 3).astype(np.uint32), np.ascontiguousarray(bgr[:, :, ::-1]))
