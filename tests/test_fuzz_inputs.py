"""Fuzz (hypothesis) over the files users give: glTF environments, avatar meshes and manifests.

The contract, as for the wire protocol: whatever the mutation, loading gives a valid result or the
loader's one typed error (a `HeadcastError`) — never another exception, never an allocation the
file did not pay for, never a hang. Mutations are edits of a valid document: any value anywhere
replaced by a hostile one (huge, negative, fractional, NaN, wrong type, paths out of the folder,
devices, nesting), keys deleted, bytes of the binary flipped."""
from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import struct
import time

import pytest
from _avatar_quick import quick_build
from _gltf_samples import environment_document, write_glb, write_gltf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.atomic_files import sha256_file
from core.errors import HeadcastError
from inference.avatar_package import AvatarPackageError, load_package
from inference.head_model.gltf_io import GltfError, read_glb
from xr_runtime.gl.gltf_environment import GltfEnvironmentError, load_environment

DELETE = object()
# CI runs a few hundred examples per target (seconds); HEADCAST_FUZZ_SCALE=20 hunts longer.
SCALE = float(os.environ.get("HEADCAST_FUZZ_SCALE", "1"))


def examples(n: int) -> int:
    return max(1, int(n * SCALE))

HOSTILE_VALUES = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2**70, max_value=2**70),
    st.sampled_from([-1, 0, 1, 3, 4, 7, 252, 256, 10**7, 10**9, 2**31, 2**32 - 1, 2**63]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.5, 256.0, 1e308, -1e308]),
    st.text(max_size=12),
    st.sampled_from(["/dev/zero", "../outside.bin", "data:,", "data:application/octet-stream;base64,AAAA",
                     "http://example.com/x.bin", "%2e%2e/outside.bin", "room.bin", "VEC3", "MAT4", "SCALAR",
                     "KHR_draco_mesh_compression", "2.0"]),
    st.lists(st.integers(min_value=-3, max_value=10), max_size=6),
    st.lists(st.floats(allow_nan=True), max_size=17),
    st.dictionaries(st.sampled_from(["POSITION", "uri", "byteLength", "count", "x"]),
                    st.integers(min_value=-2, max_value=10**8), max_size=3),
    st.just(DELETE),
    st.just("__deep__"),
)


def _paths(value, prefix=()):
    """Every (container path, key) in a JSON value."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            out.append(prefix + (k,))
            out += _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.append(prefix + (i,))
            out += _paths(v, prefix + (i,))
    return out


def _mutate(doc, path, value):
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value  # "__deep__" becomes 5000 nested lists when written (_dump)


@st.composite
def mutated(draw, base: dict, max_edits: int = 3):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=max_edits))):
        paths = _paths(doc)
        if not paths:
            break
        _mutate(doc, draw(st.sampled_from(paths)), draw(HOSTILE_VALUES))
    return doc


def _dump(doc) -> str:
    return json.dumps(doc).replace('"__deep__"', "[" * 5000 + "]" * 5000)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


BASE_DOC, BASE_BLOB = environment_document()


@settings(max_examples=examples(250), deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                  HealthCheck.function_scoped_fixture])
@given(doc=mutated(BASE_DOC), flips=st.lists(st.tuples(st.integers(0, len(BASE_BLOB) - 1), st.integers(1, 255)),
                                             max_size=3),
       container=st.sampled_from(["gltf", "glb", "external"]))
def test_any_mutated_gltf_environment_loads_or_is_a_typed_error(tmp_path_factory, doc, flips, container):
    folder = tmp_path_factory.mktemp("env") / "scene"
    folder.mkdir()
    (folder.parent / "outside.bin").write_bytes(b"\0" * len(BASE_BLOB))
    blob = bytearray(BASE_BLOB)
    for i, x in flips:
        blob[i] ^= x
    text = _dump(doc)
    if container == "glb":
        path = folder / "room.glb"
        write_glb(path, doc, bytes(blob), text=text)
    else:
        path = folder / "room.gltf"
        if isinstance(doc, dict) and isinstance(doc.get("buffers"), list) and doc["buffers"] \
                and isinstance(doc["buffers"][0], dict) and "uri" not in doc["buffers"][0] and text[0] == "{":
            write_gltf(path, doc, bytes(blob), external=container == "external")
        else:
            (folder / "room.bin").write_bytes(bytes(blob))
            path.write_text(text)
    before = _rss_mb()
    t0 = time.monotonic()
    try:
        meshes = load_environment(path)
    except GltfEnvironmentError as exc:
        assert str(path) in str(exc) or path.name in str(exc)
    else:
        for m in meshes:  # a valid load is a usable one
            assert m.vertices.dtype.name == "float32" and m.indices.dtype.name == "uint32"
            assert m.indices.size and int(m.indices.max()) < len(m.vertices)
    assert time.monotonic() - t0 < 10
    assert _rss_mb() - before < 600  # what a 1 KB file may cost


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def manifest(package_dir):
    return json.loads((package_dir / "avatar.json").read_text())


@pytest.fixture(scope="module")
def mesh_parts(package_dir):
    raw = (package_dir / "mesh.glb").read_bytes()
    (n,) = struct.unpack_from("<I", raw, 12)
    return json.loads(raw[20:20 + n]), raw[20 + n:]


def test_manifest_fuzz(package_dir, manifest, tmp_path_factory):
    """Avatar manifests: any mutation is a valid package or one AvatarPackageError."""
    base = tmp_path_factory.mktemp("pkg") / "avatar"
    shutil.copytree(package_dir, base)
    seen = {"typed": 0, "valid": 0}

    @settings(max_examples=examples(120), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])
    @given(doc=mutated(manifest, max_edits=2))
    def check(doc):
        (base / "avatar.json").write_text(_dump(doc))
        before = _rss_mb()
        t0 = time.monotonic()
        try:
            load_package(base)
            seen["valid"] += 1
        except AvatarPackageError as exc:
            assert str(base) in str(exc)
            seen["typed"] += 1
        assert time.monotonic() - t0 < 20
        assert _rss_mb() - before < 600

    check()
    assert seen["typed"] > 50  # the fuzz reached the loader's refusals


def test_avatar_mesh_fuzz(package_dir, mesh_parts, tmp_path_factory):
    """mesh.glb (with the manifest's checksums updated, as a careful tamperer would): any mutation of
    its JSON is a valid mesh or a GltfError, both straight and through the package loader."""
    doc0, rest = mesh_parts
    folder = tmp_path_factory.mktemp("mesh")

    @settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.data_too_large])
    @given(doc=mutated(doc0, max_edits=2))
    def check(doc):
        text = _dump(doc).encode()
        text += b" " * (-len(text) % 4)
        body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
        path = folder / "mesh.glb"
        path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
        before = _rss_mb()
        try:
            mesh = read_glb(path)
        except GltfError as exc:
            assert "mesh.glb" in str(exc)
        else:
            assert mesh.indices.size == 0 or int(mesh.indices.max()) < len(mesh.positions)
        assert _rss_mb() - before < 600

    check()


def test_a_tampered_mesh_inside_a_package_is_a_package_error(package_dir, mesh_parts, tmp_path):
    doc, rest = mesh_parts
    pkg = tmp_path / "avatar"
    shutil.copytree(package_dir, pkg)
    doc = copy.deepcopy(doc)
    doc["bufferViews"][0]["byteStride"] = 4  # smaller than a VEC3 float element
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    body = struct.pack("<II", len(text), 0x4E4F534A) + text + rest
    (pkg / "mesh.glb").write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)
    manifest = json.loads((pkg / "avatar.json").read_text())
    manifest["files"]["mesh.glb"] = {"sha256": sha256_file(pkg / "mesh.glb"), "bytes": (pkg / "mesh.glb").stat().st_size}
    (pkg / "avatar.json").write_text(json.dumps(manifest))
    with pytest.raises(AvatarPackageError, match="byteStride"):
        load_package(pkg)
    assert issubclass(AvatarPackageError, HeadcastError)
