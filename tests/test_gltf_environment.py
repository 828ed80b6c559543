"""glTF 2.0 environments from the scene file, rendered on a real headless EGL context."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("xr_runtime.gl.egl_context")
pygltflib = pytest.importorskip("pygltflib")
cv2 = pytest.importorskip("cv2")

from geometry import transforms  # noqa: E402
from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig  # noqa: E402
from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream, dev_head_mesh, dev_texture, solid_texture  # noqa: E402
from xr_runtime.gl.gltf_environment import GltfEnvironmentError, load_environment  # noqa: E402
from xr_runtime.avatars.assets import AvatarAssets  # noqa: E402
from xr_runtime.render_node import RenderNode  # noqa: E402
from xr_runtime.scene.scene_file import Scene  # noqa: E402

W, H = 160, 120


pytestmark = pytest.mark.usefixtures("egl_available")


def _quad(half_w, half_h):
    """A quad in its xy plane facing +Z, with UVs (glTF: v down) and normals."""
    pos = np.array([[-half_w, -half_h, 0], [half_w, -half_h, 0], [half_w, half_h, 0], [-half_w, half_h, 0]], np.float32)
    nrm = np.tile(np.array([0, 0, 1], np.float32), (4, 1))
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float32)
    idx = np.array([0, 1, 2, 0, 2, 3], np.uint16)
    return pos, nrm, uv, idx


def write_environment(path: Path, texture_rgb=(255, 0, 0), floor_factor=(0.0, 0.6, 0.0, 1.0), with_normals=True):
    """Node 0: a 10×10 m floor (rotated −90° about x, green factor); node 1: a textured 1×1 m panel
    3 m ahead at eye height (red PNG, stored in a buffer view)."""
    g = pygltflib
    blob = bytearray()
    views, accessors = [], []

    def add(array: np.ndarray, target=None, kind="VEC3", minmax=False) -> int:
        while len(blob) % 4:
            blob.append(0)
        views.append(g.BufferView(buffer=0, byteOffset=len(blob), byteLength=array.nbytes, target=target))
        blob.extend(array.tobytes())
        if kind is None:
            return len(views) - 1
        ctype = g.UNSIGNED_SHORT if array.dtype == np.uint16 else g.FLOAT
        count = array.shape[0] if array.ndim > 1 else array.size
        acc = g.Accessor(bufferView=len(views) - 1, componentType=ctype, count=count, type=kind)
        if minmax:
            acc.min, acc.max = array.min(axis=0).tolist(), array.max(axis=0).tolist()
        accessors.append(acc)
        return len(accessors) - 1

    meshes = []
    for half, material in ((5.0, 0), (0.5, 1)):
        pos, nrm, uv, idx = _quad(half, half)
        attrs = g.Attributes(POSITION=add(pos, g.ARRAY_BUFFER, minmax=True), TEXCOORD_0=add(uv, g.ARRAY_BUFFER, "VEC2"))
        if with_normals:
            attrs.NORMAL = add(nrm, g.ARRAY_BUFFER)
        meshes.append(g.Mesh(primitives=[g.Primitive(attributes=attrs, indices=add(idx, g.ELEMENT_ARRAY_BUFFER, "SCALAR"),
                                                     material=material)]))
    png = np.zeros((8, 8, 3), np.uint8)
    png[:] = texture_rgb[::-1]
    ok, encoded = cv2.imencode(".png", png)
    image_view = add(np.frombuffer(encoded.tobytes(), np.uint8), kind=None)
    s = np.sin(-np.pi / 4)
    gltf = g.GLTF2(
        scene=0, scenes=[g.Scene(nodes=[0, 1])],
        nodes=[g.Node(mesh=0, rotation=[float(s), 0.0, 0.0, float(np.cos(-np.pi / 4))]),
               g.Node(mesh=1, translation=[0.0, 1.6, -3.0])],
        meshes=meshes,
        materials=[g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorFactor=list(floor_factor))),
                   g.Material(pbrMetallicRoughness=g.PbrMetallicRoughness(baseColorTexture=g.TextureInfo(index=0)))],
        textures=[g.Texture(source=0)], images=[g.Image(bufferView=image_view, mimeType="image/png")],
        accessors=accessors, bufferViews=views, buffers=[g.Buffer(byteLength=len(blob))])
    gltf.set_binary_blob(bytes(blob))
    gltf.save_binary(str(path))
    return path


def test_loader_applies_node_transforms_materials_and_texture(tmp_path):
    meshes = load_environment(write_environment(tmp_path / "env.glb"), scale=1.0)
    assert len(meshes) == 2
    by_size = sorted(meshes, key=lambda m: np.ptp(m.vertices[:, 0]))
    panel, floor = by_size
    assert np.ptp(floor.vertices[:, 1]) == pytest.approx(0, abs=1e-5)           # rotated flat
    assert floor.vertices[:, 3:6] == pytest.approx(np.tile([0, 1, 0], (len(floor.vertices), 1)), abs=1e-5)
    assert floor.vertices[0, 6:9] == pytest.approx((0, 0.6, 0))                   # base colour factor
    assert panel.vertices[:, 2] == pytest.approx(np.full(4, -3.0))
    assert panel.vertices[0, 6:9] == pytest.approx((1, 0, 0), abs=1e-3)          # red texture, linear
    scaled = load_environment(tmp_path / "env.glb", scale=2.0)
    assert sorted(np.ptp(m.vertices[:, 0]) for m in scaled)[1] == pytest.approx(20.0)


@pytest.mark.filterwarnings("ignore:pygltflib does not support")
def test_missing_normals_get_flat_ones_and_bad_files_are_named(tmp_path):
    meshes = load_environment(write_environment(tmp_path / "flat.glb", with_normals=False))
    for m in meshes:
        assert np.linalg.norm(m.vertices[:, 3:6], axis=1) == pytest.approx(np.ones(len(m.vertices)))
    (tmp_path / "junk.glb").write_bytes(b"glTF nonsense")
    with pytest.raises(GltfEnvironmentError, match="junk.glb"):
        load_environment(tmp_path / "junk.glb")


def test_scene_with_gltf_environment_renders_it_around_the_avatar(tmp_path):
    write_environment(tmp_path / "env.glb")
    scene_file = tmp_path / "scene.json"
    scene_file.write_text('{"version": 1, "environment": {"kind": "gltf", "path": "env.glb"},'
                          ' "avatars": [{"package": "a", "stream": "s", "position": [0.6, 1.6, -1.5]}]}')
    scene = Scene.load(scene_file)
    source = StaticAvatarStateSource({"s": StaticStream(solid_texture((250, 250, 250)), np.zeros(2, np.float32))})
    backend = HeadlessBackend(HeadlessConfig(width=W, height=H, read_back=True))
    stats = RenderNode(scene, [AvatarAssets(dev_head_mesh(), dev_texture())], source).run(backend, max_frames=3)
    assert stats["frames"] == 3
    image = backend.last_image
    view = transforms.look_at((0, 1.6, 0), (0, 1.6, -1))
    proj = transforms.projection_symmetric(60, W / H, 0.05, 100.0)

    def at(point):
        x, y = transforms.project_point(proj @ view, point, W, H)
        return image[int(y), int(x), :3].astype(int)

    panel = at((0.0, 1.6, -3.0))
    assert panel[0] > 150 and panel[1] < 60 and panel[2] < 60, panel        # the red textured panel
    floor = at((0.0, 0.0, -4.5))
    assert floor[1] > floor[0] + 40 and floor[1] > floor[2] + 40, floor    # the green glTF floor
    # No built-in room: above the panel the sky shows, not a wall.
    sky = image[2, W // 2, :3].astype(int)
    assert sky[2] > sky[0]


@pytest.mark.parametrize("edit", [
    lambda d: d["scenes"][0].__setitem__("nodes", 5),            # not a list: TypeError inside the walk
    lambda d: d["nodes"][0].__setitem__("mesh", 99),             # an index past the meshes
    lambda d: d["nodes"][0].__setitem__("children", ["x"]),      # a child that is not an index
    lambda d: d["meshes"][0].__setitem__("primitives", None),    # no primitive list
])
def test_a_malformed_gltf_is_a_named_error_not_a_raw_exception(tmp_path, edit):
    import json

    good = tmp_path / "room.glb"
    write_environment(good)
    gltf = pygltflib.GLTF2().load(str(good))
    doc = json.loads(gltf.to_json())
    edit(doc)
    bad = tmp_path / "bad.gltf"
    gltf.convert_buffers(pygltflib.BufferFormat.DATAURI)
    doc["buffers"] = json.loads(gltf.to_json())["buffers"]
    bad.write_text(json.dumps(doc))
    with pytest.raises(GltfEnvironmentError) as err:
        load_environment(bad)
    assert "bad.gltf" in str(err.value)
