"""A small, valid glTF 2.0 environment as plain JSON + bytes, for tests that mutate it."""
from __future__ import annotations

import base64
import copy
import json
import struct
from pathlib import Path

import numpy as np


def environment_document() -> tuple[dict, bytes]:
    """(glTF JSON, its binary buffer): a 4 m floor quad (positions, normals, uvs, uint16 indices)
    and a 1 m panel, two nodes, one material with a base colour."""
    pos = np.array([[-2, 0, -2], [2, 0, -2], [2, 0, 2], [-2, 0, 2]], np.float32)
    nrm = np.tile(np.array([0, 1, 0], np.float32), (4, 1))
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    idx = np.array([0, 2, 1, 0, 3, 2], np.uint16)
    blob = bytearray()
    views = []
    for arr in (pos, nrm, uv, idx):
        while len(blob) % 4:
            blob.append(0)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": arr.nbytes})
        blob.extend(arr.tobytes())
    while len(blob) % 4:
        blob.append(0)
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0, 1]}],
        "nodes": [{"mesh": 0}, {"mesh": 0, "translation": [0, 1.5, -3], "scale": [0.25, 1, 0.25],
                                "rotation": [0.7071068, 0, 0, 0.7071068]}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0, "NORMAL": 1, "TEXCOORD_0": 2}, "indices": 3,
                                    "material": 0}]}],
        "materials": [{"pbrMetallicRoughness": {"baseColorFactor": [0.2, 0.6, 0.2, 1.0]}}],
        "accessors": [
            {"bufferView": 0, "componentType": 5126, "count": 4, "type": "VEC3",
             "min": [-2, 0, -2], "max": [2, 0, 2]},
            {"bufferView": 1, "componentType": 5126, "count": 4, "type": "VEC3"},
            {"bufferView": 2, "componentType": 5126, "count": 4, "type": "VEC2"},
            {"bufferView": 3, "componentType": 5123, "count": 6, "type": "SCALAR"},
        ],
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    return doc, bytes(blob)


def write_gltf(path: Path, doc: dict, blob: bytes, external: bool = False) -> Path:
    """Writes a .gltf with its buffer as a data URI (or, with `external`, as NAME.bin beside it),
    unless the document already names a buffer URI."""
    doc = copy.deepcopy(doc)
    buf = doc["buffers"][0]
    if "uri" not in buf:
        if external:
            (path.parent / (path.stem + ".bin")).write_bytes(blob)
            buf["uri"] = path.stem + ".bin"
        else:
            buf["uri"] = "data:application/octet-stream;base64," + base64.b64encode(blob).decode()
    path.write_text(json.dumps(doc))
    return path


def write_glb(path: Path, doc: dict, blob: bytes, text: str | None = None) -> Path:
    text = (json.dumps(doc) if text is None else text).encode()
    text += b" " * (-len(text) % 4)
    blob = blob + b"\0" * (-len(blob) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + struct.pack("<II", len(blob), 0x004E4942) + blob
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    return path


def scene_with_environment(folder: Path, env_name: str, stream: str = "alice") -> Path:
    scene = folder / "scene.json"
    scene.write_text(json.dumps({"version": 1, "environment": {"kind": "gltf", "path": env_name},
                                 "avatars": [{"package": "p", "stream": stream, "position": [0, 1.6, -1]}]}))
    return scene
