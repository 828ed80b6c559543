"""The GPU texture path: CUDA tensors into the avatar's GL texture through CUDA-GL interop.

Needs a CUDA GPU and an NVIDIA OpenGL context (EGL device platform); skipped elsewhere with the
reason. Without a usable interop the render node must fall back to host uploads, same pixels.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.cuda

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU here", allow_module_level=True)

from geometry import transforms  # noqa: E402
from xr_runtime.avatars.dev_source import QUADRANT_COLOURS, dev_head_mesh, dev_texture, solid_texture  # noqa: E402
from xr_runtime.avatars.sampler import SamplerConfig  # noqa: E402
from xr_runtime.avatars.state import AvatarFrameState  # noqa: E402
from xr_runtime.backends.base import head_eye_views  # noqa: E402
from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig  # noqa: E402
from xr_runtime.gl.egl_context import GLContextConfig, GLContextError, HeadlessGLContext  # noqa: E402
from xr_runtime.avatars.assets import AvatarAssets  # noqa: E402
from xr_runtime.render_node import RenderNode, RenderNodeConfig  # noqa: E402
from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform  # noqa: E402

GL_CONFIG = GLContextConfig(display="device", cuda_device=0)
W, H = 200, 150
POS = (0.0, 1.6, -0.6)


@pytest.fixture(scope="module")
def nvidia_gl():
    try:
        ctx = HeadlessGLContext(GL_CONFIG)
    except GLContextError as exc:
        pytest.skip(f"no EGL device context: {exc}")
    renderer = ctx.renderer
    ctx.close()
    if "nvidia" not in renderer.lower():
        pytest.skip(f"CUDA-GL interop needs an NVIDIA GL context, got {renderer}")
    return renderer


class CudaSource:
    def __init__(self, texture: np.ndarray):
        self.tensor = torch.from_numpy(texture).cuda().contiguous()
        self.stream = torch.cuda.current_stream().cuda_stream

    def latest(self, stream_id, t_display_ns):
        return AvatarFrameState(self.tensor, np.zeros(2, np.float32), t_state_ns=1, texture_serial=1,
                                cuda_stream=self.stream)


def _render(source, allow_interop: bool, texture_size=64):
    scene = Scene([AvatarSlot(Path("a"), "alice", Transform(POS))])
    node = RenderNode(scene, [AvatarAssets(dev_head_mesh(), solid_texture((30, 30, 200), texture_size))], source,
                      RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0), allow_interop=allow_interop))
    backend = HeadlessBackend(HeadlessConfig(width=W, height=H, read_back=True, gl=GL_CONFIG))
    readback = {}
    original_end = node.end_frame

    def end_frame(frame, timing):
        original_end(frame, timing)
        if frame.index == 2:
            from OpenGL import GL

            name, h, w = node.renderer.avatar_texture(node.avatars[0].handle)
            GL.glBindTexture(GL.GL_TEXTURE_2D, name)
            GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
            data = GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
            readback["texture"] = np.frombuffer(data, np.uint8).reshape(h, w, 4).copy()

    node.end_frame = end_frame
    stats = node.run(backend, max_frames=3)
    return stats, backend.last_image, readback["texture"]


def _check_quadrants(image):
    mesh = dev_head_mesh()
    view = head_eye_views((0, 1.6, 0), (1, 0, 0, 0), False)[0][0]
    proj = transforms.projection_symmetric(60.0, W / H, 0.05, 100.0)
    for uv, colour in zip(((0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)), QUADRANT_COLOURS):
        i = int(np.argmin(np.linalg.norm(mesh.uvs - np.asarray(uv), axis=1)))
        x, y = transforms.project_point(proj @ view @ transforms.translation(*POS), mesh.positions[i], W, H)
        got = image[int(y), int(x), :3]
        assert max(abs(int(a) - int(b)) for a, b in zip(got, colour)) <= 12, (uv, got, colour)


def test_cuda_texture_reaches_gl_through_interop_exactly(nvidia_gl):
    rng = np.random.default_rng(1)
    texture = dev_texture(64)
    texture[40:44, 40:44] = rng.integers(0, 255, (4, 4, 4), dtype=np.uint8)  # a few arbitrary texels
    source = CudaSource(texture)
    stats, image, texels = _render(source, allow_interop=True)
    assert stats["uploads"]["interop_disabled"] == "", stats["uploads"]
    assert stats["uploads"]["cuda"] == 1 and stats["uploads"]["host"] == 0 and stats["uploads"]["cuda_to_host"] == 0
    assert np.array_equal(texels, source.tensor.cpu().numpy())  # the GL texture holds the tensor's bytes
    _check_quadrants(image)


def test_cuda_texture_falls_back_to_host_upload_with_the_same_pixels(nvidia_gl):
    source = CudaSource(dev_texture(64))
    stats, image, texels = _render(source, allow_interop=False)
    assert stats["uploads"]["cuda"] == 0 and stats["uploads"]["cuda_to_host"] == 1 and stats["uploads"]["host"] == 1
    assert np.array_equal(texels, source.tensor.cpu().numpy())
    _check_quadrants(image)


def test_streaming_engine_on_cuda_drives_the_avatar_through_interop(nvidia_gl):
    """Reference avatar on the CUDA engine (graph, static buffers) → WorkerStateSource → interop."""
    from inference.engine.engine import EngineConfig, StreamingEngine
    from inference.engine.reference_avatar import reference_avatar
    from streaming.protocol import FeatureFrame, FeatureKind
    from xr_runtime.avatars.engine_source import engine_state_source

    model = reference_avatar(64, seed=0)
    engine = StreamingEngine({"alice": model}, EngineConfig(device="cuda"))
    rng = np.random.default_rng(0)
    feats = np.zeros((478, 3), np.float32)

    class Feed:  # the receiver's interface the engine reads (FrameSource): new frames each step
        seq = 0

        def snapshot(self):
            return {}

        def window_received(self, sid, n):
            import time

            from streaming.receiver import ReceivedFrame

            nonlocal feats
            feats = rng.normal(0, 0.3, feats.shape).astype(np.float32)  # in the trained range (issue 11)
            t = time.monotonic_ns()
            Feed.seq += 1
            return [ReceivedFrame(FeatureFrame("alice", Feed.seq, FeatureKind.MP478, feats.copy(), t, t), t)]

    source = engine_state_source(engine, Feed(), period_s=1 / 60).start()
    try:
        with torch.no_grad():
            tex, w = model.decoder(model.net.neutral_z[None])
        scene = Scene([AvatarSlot(Path("a"), "alice", Transform(POS))])
        from xr_runtime.avatars.dev_source import dev_head_mesh as mesh_of

        node = RenderNode(scene, [AvatarAssets(mesh_of(blendshapes=int(w.shape[-1])), solid_texture((30, 30, 200), 64))],
                          source, RenderNodeConfig(sampler=SamplerConfig(fade_s=0.05)))
        images = []
        backend = HeadlessBackend(HeadlessConfig(width=W, height=H, paced=True, fps=30, gl=GL_CONFIG, read_back=True))
        original_end = node.end_frame

        def end_frame(frame, timing):
            original_end(frame, timing)
            images.append(backend.last_image)

        node.end_frame = end_frame
        stats = node.run(backend, max_frames=40)
    finally:
        source.stop()
    assert source.errors == 0 and source.steps > 10
    assert stats["uploads"]["interop_disabled"] == "" and stats["uploads"]["cuda"] >= 10, stats["uploads"]
    assert stats["streams"]["alice"]["live_frames"] > 10
    crops = [im[50:100, 80:120, :3].astype(int) for im in images[-20:]]
    assert sum(int(np.abs(a - b).max()) > 30 for a, b in zip(crops, crops[1:])) >= 5
