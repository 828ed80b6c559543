"""mesh.glb for other tools: smooth normals, ARKit-named morph targets after the runtime's own, and
the Khronos glTF-Validator (npm gltf-validator, installed by `make test` into .venv/node_modules)
reports no error, warning, info or hint. A file needing meshopt compression is refused by name."""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from _avatar_quick import quick_build
from inference.features.expr52_names import ARKIT52

REPO = Path(__file__).resolve().parents[1]
NODE_MODULES = REPO / ".venv" / "node_modules"


@pytest.fixture(scope="module")
def package_dir(tmp_path_factory):
    return quick_build(tmp_path_factory.getbasetemp())


def _glb_json(path: Path) -> dict:
    b = path.read_bytes()
    n = struct.unpack_from("<I", b, 12)[0]
    return json.loads(b[20:20 + n])


def test_mesh_has_smooth_normals_and_arkit_targets(package_dir):
    from inference.avatar_package import AvatarPackage
    from inference.head_model.gltf_io import smooth_normals

    doc = _glb_json(package_dir / "mesh.glb")
    prim, extras = doc["meshes"][0]["primitives"][0], doc["meshes"][0]["extras"]
    assert "NORMAL" in prim["attributes"]
    pkg = AvatarPackage.load(package_dir)  # the runtime still reads exactly its own K targets
    k = pkg.manifest.n_blendshapes
    assert extras["runtimeTargets"] == k == pkg.mesh.blendshapes.shape[0]
    names = extras["targetNames"]
    assert names[:k] == [f"bs{i:02d}" for i in range(k)] and len(names) == len(prim["targets"])
    named = names[k:]
    assert set(named) <= set(ARKIT52) and {"jawOpen", "mouthSmileLeft", "eyeBlinkRight"} <= set(named)
    assert "tongueOut" not in named  # landmarks never see it: the avatar has no such shape
    m = pkg.mesh
    n = smooth_normals(m.positions, m.indices)
    assert np.allclose(np.linalg.norm(n, axis=1), 1, atol=1e-5)
    # Smooth: across every edge the two vertex normals agree far better than faceted shading would.
    e = m.indices[:, [0, 1]]
    assert np.median((n[e[:, 0]] * n[e[:, 1]]).sum(1)) > 0.95  # (0.967 on the 801-vertex quick head)
    # Outwards (the closed head's winding is counter-clockwise seen from outside).
    out = ((m.positions - m.positions.mean(0)) * n).sum(1) > 0
    assert out.mean() > 0.9, out.mean()


def test_khronos_validator_reports_nothing(package_dir):
    node = shutil.which("node")
    if node is None or not (NODE_MODULES / "gltf-validator").is_dir():
        pytest.skip("node or npm's gltf-validator missing (make test installs it into .venv/node_modules)")
    r = subprocess.run([node, str(REPO / "tests" / "gltf_validate.js"), str(NODE_MODULES), str(package_dir / "mesh.glb")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert (report["errors"], report["warnings"], report["infos"], report["hints"]) == (0, 0, 0, 0), report["messages"]


def test_meshopt_required_is_refused_by_name(tmp_path, package_dir):
    from inference.head_model.gltf_io import GltfError, read_glb

    b = bytearray((package_dir / "mesh.glb").read_bytes())
    n = struct.unpack_from("<I", b, 12)[0]
    doc = json.loads(b[20:20 + n])
    doc["extensionsUsed"] = doc["extensionsRequired"] = ["EXT_meshopt_compression"]
    text = json.dumps(doc).encode()
    text += b" " * (-len(text) % 4)
    rest = bytes(b[20 + n:])
    out = struct.pack("<4sII", b"glTF", 2, 12 + 8 + len(text) + len(rest)) + struct.pack("<I4s", len(text), b"JSON") + text + rest
    (tmp_path / "mesh.glb").write_bytes(out)
    with pytest.raises(GltfError, match="EXT_meshopt_compression"):
        read_glb(tmp_path / "mesh.glb")
