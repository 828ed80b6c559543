"""GPU resources of one avatar: mesh buffers, the blendshape basis and the dynamic texture.

The basis is uploaded once into a texture buffer (RGBA32F, k-major); per frame only the K weights
(a uniform array) and, when it changed, the texture (glTexSubImage2D of RGBA8, the fastest host
upload measured on llvmpipe — FACTS.md) are sent.
"""
from __future__ import annotations

import ctypes

import numpy as np
from OpenGL import GL

# The raw entry point: PyOpenGL's wrapper keeps per-context bookkeeping that needs the platform's
# GetCurrentContext, which fails when pyopenxr forced GLX onto an EGL context (gl_platform).
from OpenGL.raw.GL.VERSION.GL_2_0 import glVertexAttribPointer as raw_vertex_attrib_pointer

from xr_runtime.avatars.mesh import AvatarMeshData

DEFAULT_TEXTURE_COLOR = (200, 200, 200, 255)  # shown until the first texture arrives


class AvatarGPU:
    """Upload an `AvatarMeshData` once; then `set_texture` per frame and `draw` per eye."""

    def __init__(self, mesh: AvatarMeshData, texture_size: tuple[int, int] = (256, 256),
                 mipmaps: bool = True) -> None:
        self.mesh = mesh
        # A 256²–512² face drawn a metre or two away covers far fewer pixels than it has texels;
        # without mipmaps it shimmers. Regenerating them costs one glGenerateMipmap per upload.
        self.mipmaps = mipmaps
        self.vertex_count = mesh.vertex_count
        self.blendshape_count = mesh.blendshape_count
        self.index_count = mesh.indices.size
        self.texture_serial: int | None = None

        self.vao = int(GL.glGenVertexArrays(1))
        GL.glBindVertexArray(self.vao)
        self.buffers = [int(b) for b in GL.glGenBuffers(5)]
        position_vbo, uv_vbo, index_ebo, basis_tbo, body_vbo = self.buffers
        body = (mesh.body_weights if mesh.body_weights is not None
                else np.zeros(mesh.vertex_count, np.float32)).reshape(-1, 1)
        for location, vbo, data, size in ((0, position_vbo, mesh.positions, 3), (1, uv_vbo, mesh.uvs, 2),
                                          (2, body_vbo, np.ascontiguousarray(body, np.float32), 1)):
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, data, GL.GL_STATIC_DRAW)
            GL.glEnableVertexAttribArray(location)
            raw_vertex_attrib_pointer(location, size, GL.GL_FLOAT, GL.GL_FALSE, 0, ctypes.c_void_p(0))
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, index_ebo)
        GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, mesh.indices.nbytes, mesh.indices, GL.GL_STATIC_DRAW)
        GL.glBindVertexArray(0)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)

        # RGBA32F rather than RGB32F: texture buffers of RGB formats need GL 4.0.
        k = max(self.blendshape_count, 1)
        basis = np.zeros((k, self.vertex_count, 4), dtype=np.float32)
        basis[: self.blendshape_count, :, :3] = mesh.blendshapes
        limit = int(GL.glGetIntegerv(GL.GL_MAX_TEXTURE_BUFFER_SIZE))
        if basis.shape[0] * basis.shape[1] > limit:
            raise ValueError(f"blendshape basis of {k}x{self.vertex_count} texels exceeds "
                             f"GL_MAX_TEXTURE_BUFFER_SIZE={limit}")
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, basis_tbo)
        GL.glBufferData(GL.GL_TEXTURE_BUFFER, basis.nbytes, basis, GL.GL_STATIC_DRAW)
        GL.glBindBuffer(GL.GL_TEXTURE_BUFFER, 0)
        self.basis_texture = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self.basis_texture)
        GL.glTexBuffer(GL.GL_TEXTURE_BUFFER, GL.GL_RGBA32F, basis_tbo)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, 0)

        self.torso = TorsoGPU(mesh.torso, mipmaps) if mesh.torso is not None else None
        self.storage_texture = self.texture = 0
        self.texture_size = (0, 0)
        self._allocate_texture(texture_size)
        fill = np.empty((*texture_size, 4), dtype=np.uint8)
        fill[:] = DEFAULT_TEXTURE_COLOR
        self.set_texture(fill)
        self.texture_serial = None

    def _allocate_texture(self, size: tuple[int, int]) -> None:
        """Immutable RGBA8 storage plus an sRGB *view* of the same texels, when GL has views.

        The bytes are sRGB-encoded images. Sampling must decode them (GL_SRGB8_ALPHA8), but CUDA
        can register only plain formats such as GL_RGBA8 — so uploads and CUDA interop write the
        RGBA8 storage (`storage_texture`) and the shader samples the sRGB view (`texture`).
        Without texture views (GL < 4.3) one sRGB texture serves both; interop then is off.
        """
        self._delete_textures()
        height, width = size
        levels = max(width, height).bit_length() if self.mipmaps else 1
        has_views = bool(GL.glTextureView)
        self.storage_texture = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.storage_texture)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, levels,
                          GL.GL_RGBA8 if has_views else GL.GL_SRGB8_ALPHA8, width, height)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        if has_views:
            self.texture = int(GL.glGenTextures(1))
            GL.glTextureView(self.texture, GL.GL_TEXTURE_2D, self.storage_texture,
                             GL.GL_SRGB8_ALPHA8, 0, levels, 0, 1)
        else:
            self.texture = self.storage_texture
        self.interop_capable = has_views
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER,
                           GL.GL_LINEAR_MIPMAP_LINEAR if self.mipmaps else GL.GL_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self.texture_size = (height, width)

    def _delete_textures(self) -> None:
        names = {t for t in (self.texture, self.storage_texture) if t}
        if names:
            GL.glDeleteTextures(list(names))
        self.texture = self.storage_texture = 0

    def set_texture(self, rgba: np.ndarray, serial: int | None = None) -> None:
        """Upload an (H, W, 4) uint8 sRGB image, top row first. Reallocates if the size changed.

        With a `serial`, a second call with the same serial (the other eye) is skipped.
        """
        if serial is not None and serial == self.texture_serial:
            return
        if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4:
            raise ValueError(f"texture must be (H, W, 4) uint8, got {rgba.shape} {rgba.dtype}")
        if rgba.shape[:2] != self.texture_size:
            self._allocate_texture(rgba.shape[:2])
        data = np.ascontiguousarray(rgba)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.storage_texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, data.shape[1], data.shape[0],
                           GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, data)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self.texture_written()
        self.texture_serial = serial

    def texture_written(self) -> None:
        """Call after level 0 changed (host upload, CUDA interop): refresh the mip chain.

        Generated through the sRGB view, so the averaging happens in linear light.
        """
        if self.mipmaps:
            GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
            GL.glGenerateMipmap(GL.GL_TEXTURE_2D)
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def draw(self) -> None:
        """Issue the draw call; the caller has bound the avatar program and set its uniforms."""
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glActiveTexture(GL.GL_TEXTURE1)
        GL.glBindTexture(GL.GL_TEXTURE_BUFFER, self.basis_texture)
        GL.glBindVertexArray(self.vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self.index_count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
        GL.glBindVertexArray(0)
        GL.glActiveTexture(GL.GL_TEXTURE0)

    def delete(self) -> None:
        if self.torso is not None:
            self.torso.delete()
            self.torso = None
        self._delete_textures()
        GL.glDeleteTextures([self.basis_texture])
        GL.glDeleteBuffers(len(self.buffers), self.buffers)
        GL.glDeleteVertexArrays(1, [self.vao])
        self.buffers = []


class TorsoGPU:
    """An avatar's torso: its own vertex arrays and static sRGB texture, drawn with the torso
    program (assets/shaders/torso.vert/.frag)."""

    def __init__(self, torso, mipmaps: bool) -> None:
        self.index_count = torso.indices.size
        self.vao = int(GL.glGenVertexArrays(1))
        GL.glBindVertexArray(self.vao)
        self.buffers = [int(b) for b in GL.glGenBuffers(3)]
        for location, vbo, data, size in ((0, self.buffers[0], torso.positions, 3), (1, self.buffers[1], torso.uvs, 2)):
            GL.glBindBuffer(GL.GL_ARRAY_BUFFER, vbo)
            GL.glBufferData(GL.GL_ARRAY_BUFFER, data.nbytes, data, GL.GL_STATIC_DRAW)
            GL.glEnableVertexAttribArray(location)
            raw_vertex_attrib_pointer(location, size, GL.GL_FLOAT, GL.GL_FALSE, 0, ctypes.c_void_p(0))
        GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, self.buffers[2])
        GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, torso.indices.nbytes, torso.indices, GL.GL_STATIC_DRAW)
        GL.glBindVertexArray(0)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        tex = np.ascontiguousarray(torso.texture, np.uint8)
        self.texture = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_SRGB8_ALPHA8, tex.shape[1], tex.shape[0], 0,
                        GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, tex)
        if mipmaps:
            GL.glGenerateMipmap(GL.GL_TEXTURE_2D)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER,
                           GL.GL_LINEAR_MIPMAP_LINEAR if mipmaps else GL.GL_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE)
        GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def draw(self) -> None:
        """The caller has bound the torso program and set its uniforms."""
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glBindVertexArray(self.vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self.index_count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))
        GL.glBindVertexArray(0)

    def delete(self) -> None:
        GL.glDeleteTextures([self.texture])
        GL.glDeleteBuffers(len(self.buffers), self.buffers)
        GL.glDeleteVertexArrays(1, [self.vao])
        self.buffers = []
