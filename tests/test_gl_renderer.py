"""The GL renderer on a real headless EGL context (Mesa llvmpipe here), checked by pixel readback."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest

from geometry import transforms
from xr_runtime.avatars.mesh import AvatarMeshData

gl_context = pytest.importorskip("xr_runtime.gl.egl_context")

from xr_runtime.gl.renderer import AvatarDrawState, Renderer, SceneStyle  # noqa: E402
from xr_runtime.gl.target import RenderTarget  # noqa: E402
from xr_runtime.scene.room_geometry import RoomConfig  # noqa: E402

WIDTH, HEIGHT = 160, 120
RED, GREEN, BLUE, YELLOW = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)


def srgb_encode(linear: float) -> float:
    return 12.92 * linear if linear <= 0.0031308 else 1.055 * linear ** (1 / 2.4) - 0.055


@pytest.fixture(scope="module")
def context():
    try:
        ctx = gl_context.HeadlessGLContext()
    except gl_context.GLContextError as error:
        pytest.skip(f"no headless EGL OpenGL here: {error}")
    yield ctx
    ctx.close()


@pytest.fixture
def renderer(context):
    r = Renderer()
    yield r
    r.close()


@pytest.fixture
def target(context):
    t = RenderTarget(WIDTH, HEIGHT)
    yield t
    t.delete()


def quad_mesh(half: float = 0.2, blendshapes: np.ndarray | None = None) -> AvatarMeshData:
    """A square in the model's xy plane facing +Z; UV (0,0) at its top-left corner."""
    positions = np.array([[-half, -half, 0], [half, -half, 0], [half, half, 0], [-half, half, 0]])
    uvs = np.array([[0, 1], [1, 1], [1, 0], [0, 0]])
    if blendshapes is None:
        blendshapes = np.zeros((0, 4, 3))
    return AvatarMeshData(positions, uvs, np.array([[0, 1, 2], [0, 2, 3]]), blendshapes)


def quadrant_texture(size: int = 64) -> np.ndarray:
    tex = np.zeros((size, size, 4), dtype=np.uint8)
    h = size // 2
    tex[:h, :h, :3], tex[:h, h:, :3] = RED, GREEN
    tex[h:, :h, :3], tex[h:, h:, :3] = BLUE, YELLOW
    tex[..., 3] = 255
    return tex


def camera():
    """Viewer at 1.6 m looking level along -Z; avatars go 1.5 m in front."""
    view = transforms.look_at((0, 1.6, 0), (0, 1.6, -1))
    proj = transforms.projection_symmetric(60, WIDTH / HEIGHT, 0.05, 50)
    return view, proj


def pixel(image: np.ndarray, xy: tuple[float, float]) -> tuple[int, ...]:
    return tuple(int(v) for v in image[int(xy[1]), int(xy[0]), :3])


def colour_mask(image: np.ndarray, rgb) -> np.ndarray:
    return np.all(np.abs(image[..., :3].astype(int) - np.array(rgb)) <= 2, axis=-1)


def test_default_scene_has_sky_above_and_floor_below(renderer, target):
    view, proj = camera()
    renderer.draw(view, proj, [], target)
    image = target.read_rgba()
    sky, floor = image[2, WIDTH // 2, :3].astype(int), image[-2, WIDTH // 2, :3].astype(int)
    assert sky[2] > sky[0] + 30, f"top of the view should be blue sky, got {sky}"
    assert abs(floor[0] - floor[2]) < 25 and floor[0] < sky[0], f"bottom should be grey floor, got {floor}"
    assert (image[..., 3] == 255).all()
    # The grid draws dark lines on the floor: the floor half is not one flat colour.
    lower = image[HEIGHT * 3 // 4:, :, 0].astype(int)
    assert lower.max() - lower.min() > 20


def test_walls_occlude_what_is_behind_them(renderer, target):
    view, proj = camera()
    mesh = renderer.add_avatar(quad_mesh(1.0))
    texture = np.full((8, 8, 4), 255, np.uint8)
    texture[..., :3] = (255, 0, 255)
    behind_wall = AvatarDrawState(mesh, transforms.translation(0, 1.6, -6.0), texture=texture)
    renderer.draw(view, proj, [behind_wall], target)
    assert not colour_mask(target.read_rgba(), (255, 0, 255)).any()
    in_room = AvatarDrawState(mesh, transforms.translation(0, 1.6, -3.0))
    renderer.draw(view, proj, [in_room], target)
    assert colour_mask(target.read_rgba(), (255, 0, 255)).sum() > 100


def test_clear_colour_is_sRGB_encoded(renderer, target):
    # Linear 0.5 stored in an sRGB target must come back as 188, not 128.
    renderer.style = SceneStyle(sky_horizon=(0.5, 0.5, 0.5), show_sky=False, show_room=False)
    view, proj = camera()
    renderer.draw(view, proj, [], target)
    image = target.read_rgba()
    expected = round(srgb_encode(0.5) * 255)
    assert np.abs(image[..., :3].astype(int) - expected).max() <= 1


def test_avatar_texture_round_trips_sRGB(renderer, target):
    # sRGB texture → linear in the shader → sRGB framebuffer: 128 stays 128 (±1 for rounding).
    # A linear texture format would return 188; a linear framebuffer would return 55.
    mesh = renderer.add_avatar(quad_mesh(0.5))
    texture = np.full((16, 16, 4), 128, np.uint8)
    texture[..., 3] = 255
    view, proj = camera()
    renderer.draw(view, proj, [AvatarDrawState(mesh, transforms.translation(0, 1.6, -1.5), texture=texture)], target)
    centre = target.read_rgba()[HEIGHT // 2 - 5: HEIGHT // 2 + 5, WIDTH // 2 - 5: WIDTH // 2 + 5, :3]
    assert np.abs(centre.astype(int) - 128).max() <= 1


def test_texture_quadrants_appear_where_the_avatar_is(renderer, target):
    mesh_data = quad_mesh(0.3)
    mesh = renderer.add_avatar(mesh_data, texture_size=(64, 64))
    model = transforms.translation(0.2, 1.5, -1.5)
    view, proj = camera()
    renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=quadrant_texture())], target)
    image = target.read_rgba()
    mvp = proj @ view @ model
    for corner, colour in (((-0.15, 0.15), RED), ((0.15, 0.15), GREEN),
                           ((-0.15, -0.15), BLUE), ((0.15, -0.15), YELLOW)):
        xy = transforms.project_point(mvp, (*corner, 0.0), WIDTH, HEIGHT)
        assert pixel(image, xy) == colour, f"quadrant at {corner} → pixel {xy}"
    # Outside the quad there is no texture colour.
    outside = transforms.project_point(mvp, (-0.45, 0.0, 0.0), WIDTH, HEIGHT)
    assert pixel(image, outside) not in (RED, GREEN, BLUE, YELLOW)
    # The covered area matches the projected quad's area (within edge pixels).
    corners = [transforms.project_point(mvp, (*c, 0.0), WIDTH, HEIGHT) for c in ((-0.3, -0.3), (0.3, 0.3))]
    area = abs(corners[1][0] - corners[0][0]) * abs(corners[1][1] - corners[0][1])
    covered = sum(colour_mask(image, c).sum() for c in (RED, GREEN, BLUE, YELLOW))
    assert abs(covered - area) < 0.15 * area


def mask_centroid(image: np.ndarray, rgb) -> np.ndarray:
    ys, xs = np.nonzero(colour_mask(image, rgb))
    assert xs.size > 20, "avatar not visible"
    return np.array([xs.mean(), ys.mean()])


def test_blendshape_weights_move_vertices(renderer, target):
    shapes = np.zeros((2, 4, 3), dtype=np.float32)
    shapes[0, :, 0] = 0.25            # shape 0 moves the whole quad right
    shapes[1, 2:, 1] = 0.3            # shape 1 stretches the top edge upwards
    mesh_data = quad_mesh(0.2, shapes)
    mesh = renderer.add_avatar(mesh_data)
    texture = np.full((8, 8, 4), 255, np.uint8)
    texture[..., :3] = (255, 0, 255)
    model = transforms.translation(0, 1.6, -1.5)
    view, proj = camera()
    mvp = proj @ view @ model
    centroids = {}
    for weights in ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0)):
        state = AvatarDrawState(mesh, model, np.array(weights), texture=texture, texture_serial=1)
        renderer.draw(view, proj, [state], target)
        centroids[weights] = mask_centroid(target.read_rgba(), (255, 0, 255))
        # The shader's deformation equals the CPU reference: compare with its projected centre.
        deformed = mesh_data.deformed_positions(np.array(weights))
        projected = np.array([transforms.project_point(mvp, p, WIDTH, HEIGHT) for p in deformed])
        assert np.allclose(centroids[weights], projected.mean(axis=0), atol=1.5)
    shift = centroids[(1.0, 0.0)] - centroids[(0.0, 0.0)]
    assert shift[0] > 10 and abs(shift[1]) < 1
    stretch = centroids[(0.0, 1.0)] - centroids[(0.0, 0.0)]
    assert stretch[1] < -5 and abs(stretch[0]) < 1   # image y points down: up is negative


def test_wrong_weight_count_is_an_error(renderer, target):
    mesh = renderer.add_avatar(quad_mesh(0.2, np.zeros((3, 4, 3))))
    view, proj = camera()
    with pytest.raises(ValueError, match="3 blendshapes"):
        renderer.draw(view, proj, [AvatarDrawState(mesh, transforms.identity(), np.zeros(2))], target)


def test_texture_updates_per_frame_and_serial_skips_reupload(renderer, target):
    mesh = renderer.add_avatar(quad_mesh(0.4))
    model = transforms.translation(0, 1.6, -1.5)
    view, proj = camera()
    centre = (WIDTH // 2, HEIGHT // 2)
    frames = []
    for serial, colour in ((1, RED), (2, GREEN), (2, BLUE)):
        texture = np.full((32, 32, 4), 255, np.uint8)
        texture[..., :3] = colour
        renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=texture, texture_serial=serial)], target)
        frames.append(pixel(target.read_rgba(), centre))
    # Serial 2 again (the second eye of the same frame) keeps the texture already uploaded.
    assert frames == [RED, GREEN, GREEN]


def test_texture_size_change_reallocates(renderer, target):
    mesh = renderer.add_avatar(quad_mesh(0.4), texture_size=(16, 16))
    view, proj = camera()
    model = transforms.translation(0, 1.6, -1.5)
    renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=quadrant_texture(128))], target)
    image = target.read_rgba()
    mvp = proj @ view @ model
    assert pixel(image, transforms.project_point(mvp, (0.2, -0.2, 0), WIDTH, HEIGHT)) == YELLOW


def test_several_avatars_and_model_rotation(renderer, target):
    mesh = renderer.add_avatar(quad_mesh(0.15))
    view, proj = camera()
    red, green = (np.full((4, 4, 4), 255, np.uint8) for _ in range(2))
    red[..., :3], green[..., :3] = RED, GREEN
    left = AvatarDrawState(mesh, transforms.translation(-0.4, 1.6, -1.5), texture=red)
    renderer.draw(view, proj, [left], target)
    other = renderer.add_avatar(quad_mesh(0.15))
    # Turned by 60° about y: still visible, but smaller on screen, by what projection predicts.
    turned = transforms.translation(0.4, 1.6, -1.5) @ transforms.rotation_y(math.radians(60))
    right = AvatarDrawState(other, turned, texture=green)
    renderer.draw(view, proj, [left, right], target)
    image = target.read_rgba()
    assert mask_centroid(image, RED)[0] < WIDTH / 2 < mask_centroid(image, GREEN)[0]
    for state, colour in ((left, RED), (right, GREEN)):
        corners = quad_mesh(0.15).positions
        xy = np.array([transforms.project_point(proj @ view @ state.model_matrix, p, WIDTH, HEIGHT)
                       for p in corners])
        area = 0.5 * abs(np.dot(xy[:, 0], np.roll(xy[:, 1], 1)) - np.dot(xy[:, 1], np.roll(xy[:, 0], 1)))
        assert colour_mask(image, colour).sum() == pytest.approx(area, rel=0.2)


def test_multisampled_target_resolves(context, renderer):
    target = RenderTarget(WIDTH, HEIGHT, samples=4)
    try:
        mesh = renderer.add_avatar(quad_mesh(0.3))
        model = transforms.translation(0, 1.6, -1.5)
        view, proj = camera()
        renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=quadrant_texture())], target)
        image = target.read_rgba()
        mvp = proj @ view @ model
        assert pixel(image, transforms.project_point(mvp, (-0.15, 0.15, 0), WIDTH, HEIGHT)) == RED
        # Antialiased edges produce blends that a single-sample render never has.
        edge_row = image[int(transforms.project_point(mvp, (0, 0.15, 0), WIDTH, HEIGHT)[1])]
        assert len({tuple(p[:3]) for p in edge_row}) > 3
    finally:
        target.delete()


def test_room_config_changes_geometry(context):
    r = Renderer(SceneStyle(room=RoomConfig(walls=False)))
    t = RenderTarget(WIDTH, HEIGHT)
    try:
        view, proj = camera()
        r.draw(view, proj, [], t)
        # Without walls the view straight ahead (just above eye level) sees sky, not a wall.
        r_sky = t.read_rgba()[HEIGHT // 2 - 3, WIDTH // 2, :3].astype(int)
        assert r_sky[2] > r_sky[0] + 30, r_sky
        default = Renderer()
        default.draw(view, proj, [], t)
        wall = t.read_rgba()[HEIGHT // 2 - 3, WIDTH // 2, :3].astype(int)
        default.close()
        assert abs(wall[0] - wall[2]) < 25, wall
    finally:
        t.delete()
        r.close()


def test_mesh_validation_names_the_problem():
    good = quad_mesh()
    with pytest.raises(ValueError, match="uvs"):
        AvatarMeshData(good.positions, good.uvs[:3], good.indices, good.blendshapes)
    with pytest.raises(ValueError, match="out of range"):
        AvatarMeshData(good.positions, good.uvs, good.indices + 4, good.blendshapes)
    with pytest.raises(ValueError, match="blendshapes"):
        AvatarMeshData(good.positions, good.uvs, good.indices, np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        AvatarMeshData(good.positions * np.nan, good.uvs, good.indices, good.blendshapes)


def test_asymmetric_fov_projection_maps_fov_edges_to_ndc_edges():
    left, right, up, down = -0.9, 0.6, 0.7, -0.8
    proj = transforms.projection_from_fov(left, right, up, down, 0.1, 10.0)
    for angle_x, angle_y, expected in ((left, 0.0, (-1, None)), (right, 0.0, (1, None)),
                                       (0.0, up, (None, 1)), (0.0, down, (None, -1))):
        point = np.array([math.tan(angle_x) * 2.0, math.tan(angle_y) * 2.0, -2.0, 1.0])
        clip = proj @ point
        ndc = clip[:3] / clip[3]
        for axis, value in enumerate(expected):
            if value is not None:
                assert ndc[axis] == pytest.approx(value, abs=1e-5)
    near = proj @ np.array([0, 0, -0.1, 1.0])
    far = proj @ np.array([0, 0, -10.0, 1.0])
    assert near[2] / near[3] == pytest.approx(-1, abs=1e-5)
    assert far[2] / far[3] == pytest.approx(1, abs=1e-5)


def test_view_matrix_inverts_pose():
    q = (0.1, 0.7, -0.2, 0.68)
    q = tuple(np.array(q) / np.linalg.norm(q))
    pose = transforms.pose_matrix((0.3, 1.6, -0.2), q)
    assert np.allclose(transforms.view_matrix((0.3, 1.6, -0.2), q) @ pose, np.eye(4), atol=1e-5)


def _render_centre_pixel() -> tuple[int, ...]:
    renderer, target = Renderer(), RenderTarget(WIDTH, HEIGHT)
    try:
        mesh = renderer.add_avatar(quad_mesh(0.3))
        view, proj = camera()
        model = transforms.translation(0, 1.6, -1.5)
        renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=quadrant_texture())], target)
        mvp = proj @ view @ model
        return pixel(target.read_rgba(), transforms.project_point(mvp, (0.15, 0.15, 0), WIDTH, HEIGHT))
    finally:
        target.delete()
        renderer.close()


def test_egl_device_platform_renders_the_same(context):
    # Mesa offers a software EGL device, so the NVIDIA-style device path runs here too.
    devices = gl_context.list_egl_devices()
    if not devices:
        pytest.skip("this EGL offers no devices")
    try:
        with gl_context.HeadlessGLContext(gl_context.GLContextConfig(display="device")) as device_ctx:
            assert device_ctx.gl_version >= (3, 3)
            assert _render_centre_pixel() == GREEN
    finally:
        context.make_current()   # the module's context again, for the tests that follow
    assert _render_centre_pixel() == GREEN


def test_renderer_works_when_pyopenxr_is_imported_first(tmp_path):
    # `import xr` switches PyOpenGL to its GLX platform; with an EGL context current the renderer
    # must still work (raw entry points, glvnd dispatch). A fresh interpreter gets that import order.
    import subprocess
    import sys

    pytest.importorskip("xr", reason="pyopenxr is not installed")
    script = tmp_path / "xr_first.py"
    script.write_text(
        "import xr, OpenGL.platform as p\n"
        "assert type(p.PLATFORM).__name__ == 'GLXPlatform', type(p.PLATFORM)\n"
        "import tests.test_gl_renderer as t\n"
        "from xr_runtime.gl.egl_context import HeadlessGLContext\n"
        "with HeadlessGLContext():\n"
        "    print(t._render_centre_pixel())\n")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
    env.pop("PYOPENGL_PLATFORM", None)
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            env=env, cwd=root, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(GREEN)


def test_mipmapped_texture_keeps_colours_when_minified(renderer, target):
    # Far away and small: every quadrant still shows its own colour (mip levels are regenerated
    # after each upload; stale or missing levels would show black or the old texture).
    mesh = renderer.add_avatar(quad_mesh(0.3), texture_size=(256, 256), mipmaps=True)
    model = transforms.translation(0, 1.6, -3.5)
    view, proj = camera()
    mvp = proj @ view @ model
    for serial, tex in ((1, quadrant_texture(256)), (2, quadrant_texture(256)[::-1].copy())):
        renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=tex, texture_serial=serial)], target)
        image = target.read_rgba()
        top_left = pixel(image, transforms.project_point(mvp, (-0.15, 0.15, 0), WIDTH, HEIGHT))
        assert top_left == (RED if serial == 1 else BLUE)


def test_external_writer_texture_is_rgba8_storage_sampled_as_sRGB(renderer, target):
    # What CUDA-GL interop does: write the RGBA8 storage texture directly, then notify.
    from OpenGL import GL

    mesh = renderer.add_avatar(quad_mesh(0.4), texture_size=(32, 32))
    name, height, width = renderer.avatar_texture(mesh)
    GL.glBindTexture(GL.GL_TEXTURE_2D, name)
    assert GL.glGetTexLevelParameteriv(GL.GL_TEXTURE_2D, 0, GL.GL_TEXTURE_INTERNAL_FORMAT) == GL.GL_RGBA8
    data = np.full((height, width, 4), 128, np.uint8)
    data[..., 3] = 255
    GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, width, height, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, data)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    renderer.avatar_texture_written(mesh)
    view, proj = camera()
    renderer.draw(view, proj, [AvatarDrawState(mesh, transforms.translation(0, 1.6, -1.5))], target)
    # Sampled through the sRGB view: 128 in, 128 out (a plain RGBA8 sample would give 188).
    assert pixel(target.read_rgba(), (WIDTH // 2, HEIGHT // 2)) == (128, 128, 128)


def test_learned_alpha_applies_edge_on_and_fades_face_on(renderer, target):
    """A texture alpha is the whole head's learned *edge-on* alpha (geometry/edge_alpha.py): a
    surface seen edge-on shows it in full, the same surface seen face-on is opaque. And a soft
    surface in front never hides an opaque one behind it (it is drawn in the second pass, without
    writing depth)."""
    view, proj = camera()
    clear = np.full((8, 8, 4), 255, np.uint8)
    clear[..., :3], clear[..., 3] = RED, 0  # fully transparent where seen edge-on
    solid = clear.copy()
    solid[..., 3] = 255
    centre = (WIDTH // 2, HEIGHT // 2)
    mesh = renderer.add_avatar(quad_mesh(0.5))
    renderer.draw(view, proj, [], target)
    background = pixel(target.read_rgba(), centre)
    facing = transforms.translation(0, 1.6, -1.5)
    edge_on = facing @ transforms.rotation_y(math.radians(85))  # |cos| ≈ 0.09 < EDGE_COS[0]
    for model, texture, expect in ((facing, clear, RED), (edge_on, solid, RED), (edge_on, clear, background)):
        renderer.draw(view, proj, [AvatarDrawState(mesh, model, texture=texture)], target)
        got = pixel(target.read_rgba(), centre)
        assert np.abs(np.array(got) - expect).max() <= 2, (texture[0, 0, 3], got, expect)
    # Half transparent edge-on, in front of an opaque green quad: the green shows through, mixed.
    half = clear.copy()
    half[..., 3] = 128
    back = renderer.add_avatar(quad_mesh(0.5))
    green = np.full((8, 8, 4), 255, np.uint8)
    green[..., :3] = GREEN
    behind = AvatarDrawState(back, transforms.translation(0, 1.6, -2.5), texture=green)
    for order in ((AvatarDrawState(mesh, edge_on, texture=half), behind),
                  (behind, AvatarDrawState(mesh, edge_on, texture=half))):
        renderer.draw(view, proj, list(order), target)
        r, g, _ = pixel(target.read_rgba(), centre)
        assert r > 60 and g > 60, (r, g)  # both: red blended over green
    # An avatar added with soft_edges=False (the render node's choice for an opaque idle texture)
    # skips the second pass: what its texture makes translucent is not drawn at all.
    promised = renderer.add_avatar(quad_mesh(0.5), soft_edges=False)
    renderer.draw(view, proj, [AvatarDrawState(promised, edge_on, texture=half)], target)
    assert np.abs(np.array(pixel(target.read_rgba(), centre)) - background).max() <= 2
