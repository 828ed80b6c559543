"""glTF 2.0 files the user gives us, validated before anything is allocated.

    doc = GltfDocument.open(path)                   # container, JSON, indices, sizes, URIs, extensions
    positions = doc.accessor(i, components=(FLOAT,), types=("VEC3",))
    for node, world in doc.scene_nodes():           # each node of the default scene once, world matrix

Both the scene's glTF environments (xr_runtime/gl/gltf_environment) and the avatar's mesh.glb
(inference/head_model/gltf_io) read through this. Hostile files used to crash or hang the render
node (issue 11): a negative ``byteStride`` segfaulted it (numpy strides over foreign memory), a
node that is its own child looped with unbounded memory, a buffer URI of ``/dev/zero`` read until
MemoryError, URIs outside the file's folder were read, an accessor of 10^7 elements without a buffer
view allocated 881 MB. What `open` checks, in this order, before reading any buffer:

* the container: GLB header, chunk lengths against the file, one JSON chunk then at most one BIN
  chunk; the file at most `GltfLimits.max_file_bytes`;
* the JSON: strict (core.strict_json: no NaN, bounded depth), and a schema of every field this
  project reads, with integer indices and sizes (``byteStride`` 4..252 in steps of 4, as the spec
  says);
* ``extensionsRequired``: a file that needs an extension we do not decode is refused, naming it
  (Draco and meshopt compression with a hint), instead of drawing garbage;
* every index (nodes, meshes, accessors, views, buffers, images, textures, materials) in range;
* the node graph: nodes form trees (no node with two parents, no cycles), at most `max_depth` deep;
* buffers: byte lengths bounded; URIs either ``data:`` (size-checked before decoding) or relative
  paths that resolve inside the file's own folder to a regular file at least as long as declared
  (``/dev/zero``, ``../../etc/passwd``, ``http://`` are refused); views inside their buffers;
* accessors: counts bounded, every element inside its view (offset + stride × (count − 1) + size),
  no sparse accessors (not decoded), and the total elements of all accessors bounded, so a file
  cannot make the reader allocate more than a few hundred MB whatever it declares.

Every refusal is a `GltfDocumentError` (a `HeadcastError`) naming the file and what is wrong.
"""
from __future__ import annotations

import base64
import binascii
import os
import stat
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from urllib.parse import unquote

import numpy as np

from core.errors import HeadcastError
from core.strict_json import StrictJsonError, describe, loads_strict, schema_errors

BYTE, UNSIGNED_BYTE, SHORT, UNSIGNED_SHORT, UNSIGNED_INT, FLOAT = 5120, 5121, 5122, 5123, 5125, 5126
COMPONENT_DTYPES = {BYTE: np.int8, UNSIGNED_BYTE: np.uint8, SHORT: np.int16, UNSIGNED_SHORT: np.uint16,
                    UNSIGNED_INT: np.uint32, FLOAT: np.float32}
TYPE_WIDTHS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
NORMALISE = {UNSIGNED_BYTE: 255.0, UNSIGNED_SHORT: 65535.0, BYTE: 127.0, SHORT: 32767.0}

GLB_MAGIC, GLB_JSON, GLB_BIN = 0x46546C67, 0x4E4F534A, 0x004E4942

# Extensions worth a specific hint when a file requires them.
COMPRESSION_EXTENSIONS = {
    "KHR_draco_mesh_compression": "Draco-compressed meshes",
    "EXT_meshopt_compression": "meshopt-compressed buffers",
    "KHR_meshopt_compression": "meshopt-compressed buffers",
}


class GltfDocumentError(HeadcastError, ValueError):
    """A glTF file is malformed, hostile, too large, or needs something this build does not decode."""


@dataclass(frozen=True)
class GltfLimits:
    max_file_bytes: int = 512 << 20
    max_buffer_bytes: int = 512 << 20       # each buffer (and the sum of all)
    max_accessor_elements: int = 1 << 22    # 4 M elements (VEC3 floats: 48 MB) per accessor
    max_total_elements: int = 1 << 24       # all accessors together (16 M: < 800 MB however typed)
    max_nodes: int = 1 << 16
    max_depth: int = 64
    max_instances: int = 1 << 16            # node visits in the scene (each node once: trees)
    supported_extensions: frozenset[str] = frozenset()  # that a file may *require*


_IDX = {"type": "integer", "minimum": 0}
_IDX_LIST = {"type": "array", "items": _IDX}


def _numbers(n: int) -> dict:
    return {"type": "array", "items": {"type": "number"}, "minItems": n, "maxItems": n}


_LENGTH = {"type": "integer", "minimum": 1}
SCHEMA = {
    "type": "object",
    "required": ["asset"],
    "properties": {
        "asset": {"type": "object", "required": ["version"],
                  "properties": {"version": {"type": "string", "pattern": "^2\\.[0-9]+$"},
                                 "minVersion": {"type": "string", "pattern": "^2\\.0$"}}},
        "extensionsUsed": {"type": "array", "items": {"type": "string"}},
        "extensionsRequired": {"type": "array", "items": {"type": "string"}},
        "scene": _IDX,
        "scenes": {"type": "array", "items": {"type": "object", "properties": {"nodes": _IDX_LIST}}},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "children": _IDX_LIST, "mesh": _IDX, "matrix": _numbers(16), "translation": _numbers(3),
            "rotation": _numbers(4), "scale": _numbers(3)}}},
        "meshes": {"type": "array", "items": {"type": "object", "required": ["primitives"], "properties": {
            "primitives": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["attributes"], "properties": {
                    "attributes": {"type": "object", "additionalProperties": _IDX},
                    "indices": _IDX, "material": _IDX,
                    "mode": {"type": "integer", "minimum": 0, "maximum": 6},
                    "targets": {"type": "array", "items": {"type": "object", "additionalProperties": _IDX}}}}},
            "weights": {"type": "array", "items": {"type": "number"}}}}},
        "accessors": {"type": "array", "items": {
            "type": "object", "required": ["componentType", "count", "type"], "properties": {
                "bufferView": _IDX, "byteOffset": _IDX,
                "componentType": {"enum": sorted(COMPONENT_DTYPES)},
                "normalized": {"type": "boolean"}, "count": _LENGTH,
                "type": {"enum": sorted(TYPE_WIDTHS)},
                "min": {"type": "array", "items": {"type": "number"}},
                "max": {"type": "array", "items": {"type": "number"}}}}},
        "bufferViews": {"type": "array", "items": {
            "type": "object", "required": ["buffer", "byteLength"], "properties": {
                "buffer": _IDX, "byteOffset": _IDX, "byteLength": _LENGTH,
                "byteStride": {"type": "integer", "minimum": 4, "maximum": 252, "multipleOf": 4},
                "target": {"type": "integer"}}}},
        "buffers": {"type": "array", "items": {"type": "object", "required": ["byteLength"], "properties": {
            "uri": {"type": "string"}, "byteLength": _LENGTH}}},
        "images": {"type": "array", "items": {"type": "object", "properties": {
            "uri": {"type": "string"}, "bufferView": _IDX, "mimeType": {"type": "string"}}}},
        "textures": {"type": "array", "items": {"type": "object", "properties": {"source": _IDX}}},
        "materials": {"type": "array", "items": {"type": "object", "properties": {
            "pbrMetallicRoughness": {"type": "object", "properties": {
                "baseColorFactor": {"type": "array", "minItems": 4, "maxItems": 4,
                                    "items": {"type": "number", "minimum": 0, "maximum": 1}},
                "baseColorTexture": {"type": "object", "required": ["index"],
                                     "properties": {"index": _IDX, "texCoord": _IDX}}}}}}},
    },
}

# (field holding an index or a list of them, the array it points into) per array of objects.
_REFERENCES = {
    "scenes": (("nodes", "nodes"),),
    "nodes": (("children", "nodes"), ("mesh", "meshes")),
    "accessors": (("bufferView", "bufferViews"),),
    "bufferViews": (("buffer", "buffers"),),
    "images": (("bufferView", "bufferViews"),),
    "textures": (("source", "images"),),
}


class GltfDocument:
    def __init__(self, path: Path, doc: dict, bin_chunk: bytes | None, limits: GltfLimits):
        self.path = Path(path)
        self.json = doc
        self.limits = limits
        self._bin = bin_chunk
        self._buffers: dict[int, bytes] = {}

    # -- opening ---------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: Path, limits: GltfLimits = GltfLimits()) -> "GltfDocument":
        path = Path(path)
        raw = _read_file(path, limits.max_file_bytes)
        if raw[:4] == b"glTF":
            text, bin_chunk = _split_glb(path, raw)
        else:
            text, bin_chunk = raw, None
        try:
            doc = loads_strict(text, f"{path}")
        except StrictJsonError as exc:
            raise GltfDocumentError(str(exc)) from None
        if not isinstance(doc, dict):
            raise GltfDocumentError(f"{path}: not a glTF document (the top level must be an object)")
        errors = schema_errors(doc, SCHEMA)
        if errors:
            raise GltfDocumentError(f"{path}: malformed glTF {describe(errors[0])}")
        self = cls(path, doc, bin_chunk, limits)
        self._check_extensions()
        self._check_references()
        self._check_buffers()
        self._check_accessors()
        self._check_nodes()
        return self

    def _fail(self, message: str) -> GltfDocumentError:
        return GltfDocumentError(f"{self.path}: {message}")

    def items(self, key: str) -> list:
        return self.json.get(key, [])

    def _check_extensions(self) -> None:
        unsupported = [e for e in self.items("extensionsRequired") if e not in self.limits.supported_extensions]
        if unsupported:
            hints = [f"{COMPRESSION_EXTENSIONS[e]} ({e})" for e in unsupported if e in COMPRESSION_EXTENSIONS]
            hint = (f"; this build does not decode {', '.join(hints)}: export the file without mesh compression"
                    if hints else "")
            raise self._fail(f"requires extensions this build does not support: {', '.join(unsupported)}{hint}")

    def _check_references(self) -> None:
        for array, refs in _REFERENCES.items():
            for i, item in enumerate(self.items(array)):
                for key, target in refs:
                    value = item.get(key)
                    for idx in (value if isinstance(value, list) else [] if value is None else [value]):
                        if idx >= len(self.items(target)):
                            raise self._fail(f"{array}[{i}].{key} = {idx}, but there are only "
                                             f"{len(self.items(target))} {target}")
        if "scene" in self.json and self.json["scene"] >= len(self.items("scenes")):
            raise self._fail(f"scene = {self.json['scene']}, but there are only {len(self.items('scenes'))} scenes")
        n_acc, n_mat = len(self.items("accessors")), len(self.items("materials"))
        for m, mesh in enumerate(self.items("meshes")):
            for p, prim in enumerate(mesh["primitives"]):
                where = f"meshes[{m}].primitives[{p}]"
                for name, idx in list(prim["attributes"].items()) + [("indices", prim.get("indices"))] + [
                        (f"targets[{t}].{k}", v) for t, tgt in enumerate(prim.get("targets", [])) for k, v in tgt.items()]:
                    if idx is not None and idx >= n_acc:
                        raise self._fail(f"{where}.{name} = {idx}, but there are only {n_acc} accessors")
                if prim.get("material") is not None and prim["material"] >= n_mat:
                    raise self._fail(f"{where}.material = {prim['material']}, but there are only {n_mat} materials")
        n_tex = len(self.items("textures"))
        for i, mat in enumerate(self.items("materials")):
            tex = mat.get("pbrMetallicRoughness", {}).get("baseColorTexture")
            if tex is not None and tex["index"] >= n_tex:
                raise self._fail(f"materials[{i}] uses texture {tex['index']}, but there are only {n_tex} textures")
        for i, img in enumerate(self.items("images")):
            if "uri" not in img and "bufferView" not in img:
                raise self._fail(f"images[{i}] has neither a uri nor a bufferView")

    def _check_buffers(self) -> None:
        total = 0
        for i, buf in enumerate(self.items("buffers")):
            n = buf["byteLength"]
            total += n
            if n > self.limits.max_buffer_bytes or total > self.limits.max_buffer_bytes:
                raise self._fail(f"buffers declare {total} bytes, more than the {self.limits.max_buffer_bytes} allowed")
            uri = buf.get("uri")
            if uri is None:
                if i != 0 or self._bin is None:
                    raise self._fail(f"buffers[{i}] has no uri and the file has no binary chunk for it")
                if len(self._bin) < n:
                    raise self._fail(f"buffers[{i}] declares {n} bytes, the binary chunk holds {len(self._bin)}")
            elif uri.startswith("data:"):
                if _data_uri_size(uri) < n:
                    raise self._fail(f"buffers[{i}]: its data URI holds fewer than the {n} bytes it declares")
            else:
                target = self._local_file(uri, f"buffers[{i}]")
                size = target.stat().st_size
                if size < n:
                    raise self._fail(f"buffers[{i}]: {uri} holds {size} bytes, the buffer declares {n}")
        for i, view in enumerate(self.items("bufferViews")):
            buffer_len = self.items("buffers")[view["buffer"]]["byteLength"]
            end = view.get("byteOffset", 0) + view["byteLength"]
            if end > buffer_len:
                raise self._fail(f"bufferViews[{i}] ends at byte {end}, past its buffer's {buffer_len} bytes")
        for i, img in enumerate(self.items("images")):
            uri = img.get("uri")
            if uri is not None and not uri.startswith("data:"):
                self._local_file(uri, f"images[{i}]")

    def _check_accessors(self) -> None:
        total = 0
        for i, acc in enumerate(self.items("accessors")):
            count, width = acc["count"], TYPE_WIDTHS[acc["type"]]
            if "sparse" in acc:
                raise self._fail(f"accessors[{i}] is sparse (not supported)")
            if count > self.limits.max_accessor_elements:
                raise self._fail(f"accessors[{i}] has {count} elements, more than the "
                                 f"{self.limits.max_accessor_elements} allowed")
            total += count * width
            if total > self.limits.max_total_elements * 4:
                raise self._fail(f"accessors hold more than {self.limits.max_total_elements * 4} values together")
            if "bufferView" not in acc:
                continue  # zeros; allocated only if used, within the bounds above
            view = self.items("bufferViews")[acc["bufferView"]]
            item = np.dtype(COMPONENT_DTYPES[acc["componentType"]]).itemsize * width
            stride = view.get("byteStride") or item
            if stride < item:
                raise self._fail(f"accessors[{i}]: its view's byteStride {stride} is smaller than one element "
                                 f"({item} bytes)")
            end = acc.get("byteOffset", 0) + stride * (count - 1) + item
            if end > view["byteLength"]:
                raise self._fail(f"accessors[{i}] runs to byte {end} of a {view['byteLength']}-byte buffer view")

    def _check_nodes(self) -> None:
        nodes = self.items("nodes")
        if len(nodes) > self.limits.max_nodes:
            raise self._fail(f"{len(nodes)} nodes, more than the {self.limits.max_nodes} allowed")
        parent: dict[int, int] = {}
        for i, node in enumerate(nodes):
            for child in node.get("children", []):
                if child == i:
                    raise self._fail(f"nodes[{i}] is its own child")
                if child in parent:
                    raise self._fail(f"nodes[{child}] has two parents (nodes {parent[child]} and {i}): "
                                     "glTF nodes form trees")
                parent[child] = i
        for i in range(len(nodes)):  # walking up from every node must reach a root within max_depth
            seen, j = 0, i
            while j in parent:
                j = parent[j]
                seen += 1
                if j == i:
                    raise self._fail(f"nodes[{i}] is its own ancestor (a cycle in the node graph)")
                if seen > self.limits.max_depth:
                    raise self._fail(f"the node graph is deeper than {self.limits.max_depth} levels")
        for s, scene in enumerate(self.items("scenes")):
            for root in scene.get("nodes", []):
                if root in parent:
                    raise self._fail(f"scenes[{s}] lists nodes[{root}] as a root, but it is a child of "
                                     f"nodes[{parent[root]}]")
            if len(set(scene.get("nodes", []))) != len(scene.get("nodes", [])):
                raise self._fail(f"scenes[{s}] lists a root node twice")

    def _local_file(self, uri: str, what: str) -> Path:
        """A URI as a file inside the document's folder (the only place we read from)."""
        if ":" in uri.split("/", 1)[0] or uri.startswith(("/", "\\")):
            raise self._fail(f"{what}: uri {uri[:80]!r} is not a relative path (only files beside the glTF file, "
                             "or data: URIs, are read)")
        folder = self.path.parent.resolve()
        target = (folder / unquote(uri)).resolve()
        if target != folder and folder not in target.parents:
            raise self._fail(f"{what}: uri {uri[:80]!r} points outside the glTF file's folder")
        try:
            st = target.stat()
        except OSError:
            raise self._fail(f"{what}: {uri[:80]} does not exist beside the glTF file") from None
        if not stat.S_ISREG(st.st_mode):
            raise self._fail(f"{what}: {uri[:80]} is not a regular file")
        return target

    # -- reading ---------------------------------------------------------------------------------
    def buffer(self, index: int) -> bytes:
        """Buffer `index`, exactly its declared byteLength (validated at open)."""
        if index not in self._buffers:
            buf = self.items("buffers")[index]
            n = buf["byteLength"]
            uri = buf.get("uri")
            if uri is None:
                data = self._bin[:n]
            elif uri.startswith("data:"):
                data = _decode_data_uri(uri, self.path)[:n]
            else:
                with open(self._local_file(uri, f"buffers[{index}]"), "rb") as f:
                    data = f.read(n)  # never more than declared, even if the file grew meanwhile
            if len(data) < n:
                raise self._fail(f"buffers[{index}] holds {len(data)} bytes, declared {n}")
            self._buffers[index] = data
        return self._buffers[index]

    def view(self, index: int) -> tuple[bytes, int | None]:
        """(the bytes of buffer view `index`, its byteStride)."""
        view = self.items("bufferViews")[index]
        start = view.get("byteOffset", 0)
        return self.buffer(view["buffer"])[start:start + view["byteLength"]], view.get("byteStride")

    def accessor(self, index: int, components: tuple[int, ...] | None = None,
                 types: tuple[str, ...] | None = None, what: str = "") -> np.ndarray:
        """Accessor `index` as a (count, width) array (normalised integers as float32)."""
        acc = self.items("accessors")[index]
        what = what or f"accessors[{index}]"
        if components is not None and acc["componentType"] not in components:
            raise self._fail(f"{what}: component type {acc['componentType']} (expected one of {components})")
        if types is not None and acc["type"] not in types:
            raise self._fail(f"{what}: type {acc['type']} (expected one of {types})")
        dtype = np.dtype(COMPONENT_DTYPES[acc["componentType"]]).newbyteorder("<")
        width, count = TYPE_WIDTHS[acc["type"]], acc["count"]
        if "bufferView" not in acc:
            return np.zeros((count, width), dtype=np.float32)
        data, stride = self.view(acc["bufferView"])
        item = dtype.itemsize * width
        stride = stride or item
        offset = acc.get("byteOffset", 0)
        # Bounds were checked at open; `as_strided` stays inside `data` (stride ≥ item > 0).
        raw = np.lib.stride_tricks.as_strided(np.frombuffer(data, dtype=np.uint8, offset=offset),
                                              shape=(count, item), strides=(stride, 1), writeable=False)
        out = np.ascontiguousarray(raw).view(dtype).reshape(count, width)
        if acc.get("normalized") and acc["componentType"] in NORMALISE:
            out = out.astype(np.float32) / NORMALISE[acc["componentType"]]
        return out

    def image_bytes(self, index: int) -> bytes:
        img = self.items("images")[index]
        if "bufferView" in img:
            return self.view(img["bufferView"])[0]
        uri = img["uri"]
        if uri.startswith("data:"):
            return _decode_data_uri(uri, self.path)
        target = self._local_file(uri, f"images[{index}]")
        if target.stat().st_size > self.limits.max_file_bytes:
            raise self._fail(f"images[{index}]: {uri} is larger than {self.limits.max_file_bytes} bytes")
        return target.read_bytes()

    def scene_nodes(self, local_matrix: Callable[[dict], np.ndarray]) -> list[tuple[int, np.ndarray]]:
        """Each node of the default scene with its world matrix, parents first; `local_matrix(node)`
        gives a node's own transform (its matrix or TRS: geometry.transforms, the project's one
        quaternion convention)."""
        scenes = self.items("scenes")
        if not scenes:
            raise self._fail("no scenes")
        scene_index = self.json.get("scene", 0)
        out = []
        stack = [(n, np.eye(4)) for n in scenes[scene_index].get("nodes", [])]
        while stack:  # trees (checked at open): every node is visited once
            index, parent = stack.pop()
            node = self.items("nodes")[index]
            world = parent @ np.asarray(local_matrix(node), dtype=np.float64)
            if not np.isfinite(world).all():
                raise self._fail(f"nodes[{index}]: its transform is not finite")
            out.append((index, world))
            if len(out) > self.limits.max_instances:
                raise self._fail(f"more than {self.limits.max_instances} nodes in the scene")
            stack += [(child, world) for child in node.get("children", [])]
        return out


def _read_file(path: Path, max_bytes: int) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise GltfDocumentError(f"{path}: does not exist") from None
    except OSError as exc:
        raise GltfDocumentError(f"{path}: cannot be read ({exc.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise GltfDocumentError(f"{path}: is not a regular file")
    if st.st_size > max_bytes:
        raise GltfDocumentError(f"{path}: {st.st_size} bytes, more than the {max_bytes} allowed")
    try:
        with open(path, "rb") as f:
            return f.read(max_bytes + 1)
    except OSError as exc:
        raise GltfDocumentError(f"{path}: cannot be read ({exc.strerror})") from None


def _split_glb(path: Path, raw: bytes) -> tuple[bytes, bytes | None]:
    if len(raw) < 20:
        raise GltfDocumentError(f"{path}: a GLB file shorter than its headers")
    magic, version, length = struct.unpack_from("<III", raw, 0)
    if magic != GLB_MAGIC or version != 2:
        raise GltfDocumentError(f"{path}: not a glTF 2.0 binary (version {version})")
    if length != len(raw):
        raise GltfDocumentError(f"{path}: the GLB header says {length} bytes, the file has {len(raw)}")
    chunks, pos = [], 12
    while pos < len(raw):
        if pos + 8 > len(raw):
            raise GltfDocumentError(f"{path}: a GLB chunk header is cut off")
        size, kind = struct.unpack_from("<II", raw, pos)
        if pos + 8 + size > len(raw):
            raise GltfDocumentError(f"{path}: a GLB chunk of {size} bytes runs past the end of the file")
        chunks.append((kind, raw[pos + 8:pos + 8 + size]))
        pos += 8 + size
    if not chunks or chunks[0][0] != GLB_JSON:
        raise GltfDocumentError(f"{path}: a GLB file must start with its JSON chunk")
    bins = [data for kind, data in chunks[1:] if kind == GLB_BIN]  # chunks of other kinds are ignored (spec)
    if len(bins) > 1:
        raise GltfDocumentError(f"{path}: more than one binary chunk")
    return chunks[0][1], (bins[0] if bins else None)


def _data_uri_size(uri: str) -> int:
    """Bytes a base64 data URI decodes to, without decoding it."""
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        return len(unquote(payload).encode("latin-1", "replace"))
    payload = payload.strip()
    return len(payload) * 3 // 4 - payload[-2:].count("=")


def _decode_data_uri(uri: str, path: Path) -> bytes:
    head, _, payload = uri.partition(",")
    if not head.endswith(";base64"):
        return unquote(payload).encode("latin-1", "replace")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise GltfDocumentError(f"{path}: a data URI is not valid base64") from None


__all__ = ["BYTE", "FLOAT", "GltfDocument", "GltfDocumentError", "GltfLimits", "SHORT", "UNSIGNED_BYTE",
           "UNSIGNED_INT", "UNSIGNED_SHORT"]
