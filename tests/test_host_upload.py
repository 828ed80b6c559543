"""Host → texture uploads on a real headless EGL context (llvmpipe): the direct and the PBO path
write identical texels, the PBO ring never hands a frame stale bytes, and the uploader's start-up
calibration picks (and records) the faster method."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from xr_runtime.gl.egl_context import HeadlessGLContext
from xr_runtime.gl.host_upload import DirectUpload, PboUpload, calibrate


@pytest.fixture
def gl(egl_available):
    ctx = HeadlessGLContext()
    yield ctx
    ctx.close()


def _texture(width: int, height: int) -> int:
    from OpenGL import GL

    name = int(GL.glGenTextures(1))
    GL.glBindTexture(GL.GL_TEXTURE_2D, name)
    GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_RGBA8, width, height)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    return name


def _read(texture: int, width: int, height: int) -> np.ndarray:
    """Level 0 as (H, W, 4) in upload row order, read back through GL."""
    from OpenGL import GL

    GL.glBindTexture(GL.GL_TEXTURE_2D, texture)
    GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 1)
    data = GL.glGetTexImage(GL.GL_TEXTURE_2D, 0, GL.GL_RGBA, GL.GL_UNSIGNED_BYTE)
    GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
    return np.frombuffer(data, np.uint8).reshape(height, width, 4)


@pytest.mark.parametrize("width, height", [(256, 256), (130, 77)])
def test_direct_and_pbo_uploads_write_identical_texels(gl, width, height):
    from OpenGL import GL

    rng = np.random.default_rng(1)
    direct, pbo = DirectUpload(), PboUpload(count=2)
    a, b = _texture(width, height), _texture(width, height)
    try:
        # More uploads than buffers, each with new bytes: a reused (orphaned) buffer must never
        # leak the previous frame's contents into this one.
        for _ in range(5):
            image = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
            direct.upload(a, image)
            pbo.upload(b, image)
            got_direct, got_pbo = _read(a, width, height), _read(b, width, height)
            assert np.array_equal(got_direct, image)
            assert np.array_equal(got_pbo, got_direct)
        assert pbo.uploads == 5 and pbo.fallbacks == 0
        # The PBO path leaves no unpack buffer bound: later client-memory uploads still work.
        assert GL.glGetIntegerv(GL.GL_PIXEL_UNPACK_BUFFER_BINDING) == 0
        image = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
        direct.upload(a, image)
        assert np.array_equal(_read(a, width, height), image)
    finally:
        pbo.close()
        GL.glDeleteTextures([a, b])


def test_uploads_refuse_images_that_are_not_rgba8(gl):
    tex = _texture(8, 8)
    with pytest.raises(ValueError):
        PboUpload().upload(tex, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError):
        DirectUpload().upload(tex, np.zeros((8, 8, 4), np.float32))


def test_calibration_times_both_methods_and_keeps_the_faster(gl):
    methods = {"direct": DirectUpload(), "pbo": PboUpload()}
    try:
        result = calibrate(methods, 512, 512, rounds=3, uploads_per_round=3)
    finally:
        methods["pbo"].close()
    assert set(result.times_ms) == {"direct", "pbo"} and all(t > 0 for t in result.times_ms.values())
    assert result.choice == min(result.times_ms, key=result.times_ms.get)
    assert result.as_dict()["size"] == [512, 512]


@pytest.mark.parametrize("method", ["auto", "direct", "pbo"])
def test_uploader_records_its_method_and_the_avatar_texture_holds_the_bytes(gl, method, caplog):
    from xr_runtime.avatars.mesh import AvatarMeshData
    from xr_runtime.gl.renderer import Renderer
    from xr_runtime.gl.texture_upload import TextureUploader

    mesh = AvatarMeshData(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], float), np.array([[0, 0], [1, 0], [0, 1]], float),
                          np.array([[0, 1, 2]]), np.zeros((1, 3, 3)))
    renderer = Renderer()
    uploader = TextureUploader(renderer, allow_interop=False, host_method=method)
    try:
        handle = renderer.add_avatar(mesh, texture_size=(96, 128))
        with caplog.at_level(logging.INFO, logger="xr_runtime.gl.texture_upload"):
            uploader.prepare([(96, 128)])
        counters = uploader.counters
        assert counters.host_methods == {"128x96": method if method != "auto" else counters.host_methods["128x96"]}
        if method == "auto":
            calibration = counters.calibration["128x96"]
            assert set(calibration["ms"]) == {"direct", "pbo"}
            assert counters.host_methods["128x96"] == calibration["choice"] == min(calibration["ms"],
                                                                                  key=calibration["ms"].get)
            assert any("texture upload at 128x96" in r.getMessage() for r in caplog.records)
        else:
            assert counters.calibration == {}
        rng = np.random.default_rng(2)
        for serial in range(3):
            image = rng.integers(0, 256, (96, 128, 4), dtype=np.uint8)
            assert uploader.upload([(handle, image, (serial,), None)]) == {}
            storage, height, width = renderer.avatar_texture(handle)
            assert np.array_equal(_read(storage, width, height), image)
        assert counters.host == 3
        assert counters.host_pbo == (3 if counters.host_methods["128x96"] == "pbo" else 0)
    finally:
        uploader.close()
        renderer.close()


def test_uploader_rejects_an_unknown_method(gl):
    from xr_runtime.gl.texture_upload import TextureUploader

    with pytest.raises(ValueError, match="unknown host upload method"):
        TextureUploader(renderer=None, host_method="dma")
