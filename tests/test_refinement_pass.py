"""The screen-space refinement inside the GL renderer and the render node (gl/refinement_pass.py),
on a real headless EGL context (Mesa llvmpipe here), with networks whose output is known: the
zero-initialised one (an identity) and one whose only output is a constant bias (it adds red
coverage everywhere in the crop), so every pixel's expected value follows from the crop, the chin
line and the depth test."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("xr_runtime.gl.egl_context")

from geometry import transforms  # noqa: E402
from inference.head_model.matte import CHIN, FOREHEAD  # noqa: E402
from inference.head_model.refinement import Refiner, RefinementConfig, RefineNet  # noqa: E402
from xr_runtime.avatars.mesh import AvatarMeshData  # noqa: E402
from xr_runtime.gl.refinement_pass import HostCorrection  # noqa: E402
from xr_runtime.gl.renderer import AvatarDrawState, Renderer, SceneStyle  # noqa: E402
from xr_runtime.gl.target import RenderTarget  # noqa: E402

SIZE = 160
HALF_W, HALF_H = 0.2, 0.15
CONFIG = RefinementConfig(size=32, width=4, margin=1.12)


def card_mesh(cols: int = 30, rows: int = 20) -> AvatarMeshData:
    """A 0.4 × 0.3 m card facing +Z, with ≥ 468 vertices so that the chin (152) and forehead (10)
    landmarks exist: the chin at the card's centre, the forehead at its top edge — the chin line
    is the card's horizontal midline, the correction applies above it only."""
    ys, xs = np.mgrid[0:rows, 0:cols]
    pos = np.stack([(xs / (cols - 1) * 2 - 1) * HALF_W, (1 - ys / (rows - 1) * 2) * HALF_H,
                    np.zeros_like(xs, float)], -1).reshape(-1, 3)
    uvs = np.stack([xs / (cols - 1), ys / (rows - 1)], -1).reshape(-1, 2)
    faces = []
    for r in range(rows - 1):
        for c in range(cols - 1):
            i = r * cols + c
            faces += [[i, i + cols, i + 1], [i + 1, i + cols, i + cols + 1]]
    order = np.arange(len(pos))
    centre = (rows // 2) * cols + cols // 2
    top = cols // 2
    for landmark, vertex in ((FOREHEAD, top), (CHIN, centre)):  # put those vertices at the landmark indices
        j = int(np.nonzero(order == vertex)[0][0])
        order[[landmark, j]] = order[[j, landmark]]
    inverse = np.argsort(order)
    pos[centre, 1] = 0.0
    return AvatarMeshData(pos[order], uvs[order], inverse[np.asarray(faces)], np.zeros((0, len(pos), 3)))


def bias_net(rgb=(0.6, 0.0, 0.0), alpha=0.6) -> RefineNet:
    net = RefineNet(CONFIG.width)
    with torch.no_grad():
        net.out.bias.copy_(torch.tensor([*rgb, alpha]))
    return net.eval()


def grey(value: int = 128) -> np.ndarray:
    t = np.full((16, 16, 4), value, np.uint8)
    t[..., 3] = 255
    return t


def camera(x: float = 0.0):
    view = transforms.look_at((x, 0, 1.0), (x, 0, 0)).astype(np.float32)
    proj = transforms.projection_symmetric(50, 1.0, 0.05, 10).astype(np.float32)
    return view, proj


def px(view, proj, point) -> tuple[int, int]:
    x, y = transforms.project_point(proj @ view, point, SIZE, SIZE)
    return int(round(x)), int(round(y))


@pytest.fixture
def gl(egl_context):
    renderer = Renderer(SceneStyle(sky_horizon=(0.0, 0.0, 0.0), show_sky=False, show_room=False))
    target = RenderTarget(SIZE, SIZE)
    yield renderer, target
    target.delete()
    renderer.close()


def draw(renderer, target, states, view=None, proj=None) -> np.ndarray:
    if view is None:
        view, proj = camera()
    renderer.draw(view, proj, states, target)
    return target.read_rgba()[..., :3].astype(int)


def test_identity_network_leaves_the_render_as_it_was(gl):
    """A zero-initialised network (the builder's starting point) corrects nothing: the layer path
    (sRGB-premultiplied layer, composite, decode) reproduces the mesh's own draw."""
    renderer, target = gl
    mesh = card_mesh()
    tex = np.zeros((64, 64, 4), np.uint8)
    tex[..., 0] = np.linspace(0, 255, 64)[None, :]
    tex[..., 1] = np.linspace(0, 255, 64)[:, None]
    tex[..., 2], tex[..., 3] = 90, 255
    handle = renderer.add_avatar(mesh, texture_size=(64, 64))
    state = AvatarDrawState(handle, np.eye(4, dtype=np.float32), texture=tex)
    plain = draw(renderer, target, [state])
    renderer.set_refinement(handle, HostCorrection(Refiner(RefineNet(CONFIG.width).eval(), CONFIG)))
    refined = draw(renderer, target, [state])
    diff = np.abs(refined - plain).max(-1)
    assert renderer.refinement_summary()["eyes_refined"] == 1
    # Inside the card the layer (RGBA16F, L ≥ the crop, bilinear) reproduces the draw to a level;
    # only the card's outline (antialiased by the layer, aliased by the mesh draw) differs more.
    import cv2

    card = (plain.sum(-1) > 0).astype(np.uint8)
    interior = cv2.erode(card, np.ones((5, 5), np.uint8)).astype(bool)
    outline = cv2.dilate(card, np.ones((3, 3), np.uint8)).astype(bool) & ~interior
    assert interior.sum() > 2000 and diff[interior].max() <= 2, diff[interior].max()
    assert diff[~(interior | outline)].max() == 0, "nothing may change away from the card"


def test_correction_lands_in_the_crop_above_the_chin_and_nowhere_else(gl):
    renderer, target = gl
    view, proj = camera()
    handle = renderer.add_avatar(card_mesh())
    renderer.set_refinement(handle, HostCorrection(Refiner(bias_net(), CONFIG)))
    image = draw(renderer, target, [AvatarDrawState(handle, np.eye(4, dtype=np.float32), texture=grey())])
    # The crop is the card's bounding square × 1.12: 0.224 m about the centre, so it reaches above
    # and below the 0.3 m-high card. Added red coverage 0.6 over black: sRGB(0.6) ≈ 203.
    above = image[px(view, proj, (0, 0.19, 0))[::-1]]
    below = image[px(view, proj, (0, -0.19, 0))[::-1]]
    beside = image[px(view, proj, (0.3, 0.1, 0))[::-1]]
    card_top = image[px(view, proj, (0, 0.07, 0))[::-1]]
    card_bottom = image[px(view, proj, (0, -0.07, 0))[::-1]]
    assert abs(above[0] - 203) <= 6 and above[1] <= 2 and above[2] <= 2, above
    assert below.max() <= 2 and beside.max() <= 2, (below, beside)
    # On the card: red added above the chin line, the grey (128) untouched below it.
    assert card_top[0] > 200 and abs(card_top[1] - 128) <= 3, card_top
    assert np.abs(card_bottom - 128).max() <= 3, card_bottom


def test_refined_layer_is_occluded_and_blends_by_depth(gl):
    renderer, target = gl
    view, proj = camera()
    refined = renderer.add_avatar(card_mesh())
    renderer.set_refinement(refined, HostCorrection(Refiner(bias_net(), CONFIG)))
    plain = renderer.add_avatar(card_mesh())
    green = np.zeros((16, 16, 4), np.uint8)
    green[..., 1], green[..., 3] = 255, 255
    # A plain card nearer the viewer, covering the left half of the halo band above the refined one.
    near = transforms.translation(-0.2, 0.2, 0.3).astype(np.float32)
    states = [AvatarDrawState(refined, np.eye(4, dtype=np.float32), texture=grey()),
              AvatarDrawState(plain, near, texture=green)]
    image = draw(renderer, target, states)
    hidden = image[px(view, proj, (-0.1, 0.19, 0))[::-1]]
    shown = image[px(view, proj, (0.15, 0.19, 0))[::-1]]
    assert hidden[1] > 240 and hidden[0] < 10, f"the nearer card must hide the halo, got {hidden}"
    assert shown[0] > 190, shown
    # Behind the refined card's halo: the plain card, seen through the 0.6 coverage.
    far = transforms.translation(0.0, 0.2, -0.5).astype(np.float32)
    image = draw(renderer, target, [AvatarDrawState(refined, np.eye(4, dtype=np.float32)),
                                    AvatarDrawState(plain, far)])
    mixed = image[px(view, proj, (0.05, 0.19, 0))[::-1]]
    assert mixed[0] > 180 and 120 < mixed[1] < 230, f"halo over the far card: red over green, got {mixed}"


def test_both_eyes_refined_alike_and_a_still_head_is_bit_identical(gl):
    renderer, target = gl
    handle = renderer.add_avatar(card_mesh())
    renderer.set_refinement(handle, HostCorrection(Refiner(bias_net(), CONFIG)))
    state = AvatarDrawState(handle, np.eye(4, dtype=np.float32), texture=grey())
    eyes = [camera(-0.032), camera(0.032)]
    left, right = (draw(renderer, target, [state], *eye) for eye in eyes)
    again = draw(renderer, target, [state], *eyes[0])
    assert (left == again).all(), "a still head must give the same frame again"
    halo = [((img[..., 0] > 150) & (img[..., 1] < 10)).sum() for img in (left, right)]
    assert min(halo) > 200 and abs(halo[0] - halo[1]) <= 0.05 * max(halo), halo
    # Corresponding points (the same world point in each eye) get the same correction.
    for point in ((0.0, 0.19, 0.0), (0.1, 0.07, 0.0)):
        a, b = (img[px(*eye, point)[::-1]] for img, eye in ((left, eyes[0]), (right, eyes[1])))
        assert np.abs(a - b).max() <= 4, (point, a, b)
    assert renderer.refinement_summary()["eyes_refined"] == 3


class Failing:
    kind = "cpu"
    size, margin = CONFIG.size, CONFIG.margin

    def correct(self, layer, mask):
        raise RuntimeError("simulated failure")

    def layer_changed(self, layer):
        pass

    def close(self):
        pass


def test_a_failing_correction_falls_back_to_the_mesh_and_is_counted(gl):
    renderer, target = gl
    handle = renderer.add_avatar(card_mesh())
    state = AvatarDrawState(handle, np.eye(4, dtype=np.float32), texture=grey())
    plain = draw(renderer, target, [state])
    renderer.set_refinement(handle, Failing())
    for _ in range(3):
        assert (draw(renderer, target, [state]) == plain).all()
    summary = renderer.refinement_summary()
    assert summary["errors"] == 1 and summary["eyes_refined"] == 0 and summary["avatars"] == {}


def test_a_head_behind_the_viewer_is_skipped(gl):
    renderer, target = gl
    handle = renderer.add_avatar(card_mesh())
    renderer.set_refinement(handle, HostCorrection(Refiner(bias_net(), CONFIG)))
    behind = transforms.translation(0, 0, 1.2).astype(np.float32)  # straddles the eye plane
    image = draw(renderer, target, [AvatarDrawState(handle, behind, texture=grey())])
    offscreen = transforms.translation(3.0, 0, 0).astype(np.float32)
    draw(renderer, target, [AvatarDrawState(handle, offscreen, texture=grey())])
    assert image.shape == (SIZE, SIZE, 3)
    s = renderer.refinement_summary()
    assert s["eyes_skipped"] == 2 and s["errors"] == 0


def test_render_node_runs_the_refinement_where_asked(tmp_path: Path, egl_available):
    """`--refine auto` follows the package's per-path default (here: CPU off, as every package
    built so far), `--refine on` runs it on the CPU path in both eyes of every frame."""
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream
    from xr_runtime.avatars.sampler import SamplerConfig
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.render_node import RenderNode, RenderNodeConfig
    from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform

    def run(mode: str) -> dict:
        scene = Scene([AvatarSlot(tmp_path / "pkg", "alice", Transform((0.0, 1.6, -0.8)))])
        asset = AvatarAssets(card_mesh(), grey(), refinement=(bias_net(), CONFIG),
                             refinement_default={"cpu": False, "cuda": True})
        source = StaticAvatarStateSource({"alice": StaticStream(grey(), np.zeros(0, np.float32))})
        node = RenderNode(scene, [asset], source, RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0), refinement=mode))
        backend = HeadlessBackend(HeadlessConfig(width=120, height=90, stereo=True, read_back=True))
        stats = node.run(backend, max_frames=3)
        return stats["refinement"], backend.last_image

    auto, plain = run("auto")
    on, refined = run("on")
    assert auto["paths"]["alice"].startswith("off") and auto.get("eyes_refined", 0) == 0
    assert on["paths"] == {"alice": "cpu"} and on["eyes_refined"] == 6 and on["errors"] == 0
    # Red coverage 0.6 over the sky: red well above green and blue, which the sky never is.
    red = lambda img: int((img[..., 0].astype(int) - img[..., 1] > 80).sum())  # noqa: E731
    assert red(plain) == 0 and red(refined) > 100


@pytest.fixture(scope="module")
def quick_package(tmp_path_factory):
    from _avatar_quick import quick_build

    return quick_build(tmp_path_factory.getbasetemp())


class Capturing(HostCorrection):
    """The CPU path, keeping what the network was given."""

    def correct(self, layer, mask):
        self.seen = layer.read_input() * mask[..., None]
        super().correct(layer, mask)


@pytest.mark.parametrize("yaw", [0.0, -0.7])
def test_the_network_sees_in_the_node_what_the_builder_trained_it_on(gl, quick_package, yaw):
    """A real package's head, placed in a source-camera-like view (the tracker's scaled
    orthographic projection, reproduced with an orthographic GL camera): the GL layer's network
    input (crop, sRGB-premultiplied colour, learned alpha seen edge-on, supersampling, row order,
    chin cut) against the builder's own training render of the same pose (render_in_view on the
    same crop)."""
    from inference.avatar_package import AvatarPackage
    from inference.head_model.matte import above_chin
    from inference.head_model.refinement import crop_square
    from inference.head_model.render import render_in_view
    from xr_runtime.avatars.assets import idle_assets

    renderer, _ = gl
    pkg = AvatarPackage.load(quick_package)
    assets = idle_assets(pkg)
    net, cfg = pkg.refinement
    handle = renderer.add_avatar(assets.mesh, texture_size=assets.neutral_texture.shape[:2])
    capture = Capturing(Refiner(net, cfg))
    renderer.set_refinement(handle, capture)
    w, h, far = 640, 360, 1e4
    target = RenderTarget(w, h)
    try:
        # World = pixels (x right, y down, depth: smaller is nearer); the eye far along −depth.
        view = transforms.translation(-w / 2, -h / 2, far).astype(np.float32)
        proj = np.array([[2 / w, 0, 0, 0], [0, -2 / h, 0, 0], [0, 0, 1 / 2000, -far / 2000], [0, 0, 0, 1]],
                        np.float32)
        rotation = 1000.0 * transforms.rotation_y(yaw)[:3, :3] @ np.diag([1.0, -1.0, -1.0])
        model = np.eye(4)
        model[:3, :3], model[:3, 3] = rotation, (w / 2, h / 2, 0)
        weights = assets.weights0()
        renderer.draw(view, proj, [AvatarDrawState(handle, model.astype(np.float32), weights,
                                                    assets.neutral_texture)], target)
    finally:
        target.delete()
    mesh = assets.mesh
    points = (mesh.positions + np.tensordot(weights, mesh.blendshapes, 1)) @ rotation.T + model[:3, 3]
    x0, y0, side = crop_square(points, cfg.margin)
    s = cfg.size
    local = np.concatenate([(points[:, :2] - (x0, y0)) * (s / side), points[:, 2:] * (s / side)], 1)
    rgb, alpha = render_in_view(local, mesh.indices.reshape(-1, 3), mesh.uvs, assets.neutral_texture, s, s, 2)
    region = above_chin((s, s), local)[..., None]
    builder = np.concatenate([rgb, alpha[..., None]], -1) * region
    node = capture.seen
    assert node.shape == builder.shape
    sil_n, sil_b = node[..., 3] >= 0.5, builder[..., 3] >= 0.5
    iou = (sil_n & sil_b).sum() / (sil_n | sil_b).sum()
    # Measured: IoU 0.991–0.996, mean colour difference 0.001–0.002 (full build, yaw 0, 0.4, −0.7).
    assert iou > 0.97, iou
    assert np.abs(node[..., :3] - builder[..., :3]).mean() < 0.01
    assert np.abs(node[..., 3] - builder[..., 3]).mean() < 0.02


def test_drawing_into_the_bound_framebuffer_refines_the_same(gl):
    """The desktop backend draws into whatever framebuffer is bound (target None): the layer pass
    must bind its own and give the eye's back, with its viewport."""
    renderer, target = gl
    handle = renderer.add_avatar(card_mesh())
    renderer.set_refinement(handle, HostCorrection(Refiner(bias_net(), CONFIG)))
    state = AvatarDrawState(handle, np.eye(4, dtype=np.float32), texture=grey())
    expected = draw(renderer, target, [state])
    from OpenGL import GL

    view, proj = camera()
    target.bind()
    GL.glClearColor(1.0, 0.0, 1.0, 1.0)  # what a draw that missed this framebuffer would leave
    GL.glClear(GL.GL_COLOR_BUFFER_BIT)
    renderer.draw(view, proj, [state], None)
    assert (target.read_rgba()[..., :3].astype(int) == expected).all()
