"""CUDA → OpenGL texture copies without a host round trip (cuda-python graphics interop).

Each GL texture is registered with CUDA once (WriteDiscard: we overwrite it whole every frame).
Per frame, all textures are mapped in one call, the decoder's RGBA8 device tensors are copied into
the mapped arrays on the inference stream, and the textures are unmapped before GL samples them;
map/copy/unmap on one stream are ordered, so no extra synchronisation is needed. Every call must
happen on the thread where the GL context is current. Registration fails under Mesa or without a
CUDA driver: :class:`InteropUnavailable` tells the caller to fall back to host uploads.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from core.errors import BackendUnavailable

log = logging.getLogger(__name__)

GL_TEXTURE_2D = 0x0DE1
_REGISTER_READ_ONLY = 1  # cudaGraphicsRegisterFlagsReadOnly
_REGISTER_WRITE_DISCARD = 2  # cudaGraphicsRegisterFlagsWriteDiscard


class InteropUnavailable(BackendUnavailable):
    """CUDA-GL interop cannot be used here (no CUDA, no NVIDIA GL context, registration failed)."""


def _cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python layout
        except ImportError as exc:
            raise InteropUnavailable("cuda-python is not installed (pip install -e .[gpu])") from exc
    return cudart


def _check(result, what: str):
    err = result[0] if isinstance(result, tuple) else result
    cudart = _cudart()
    if int(err) != int(cudart.cudaError_t.cudaSuccess):
        try:
            name = cudart.cudaGetErrorName(err)[1].decode()
        except Exception:
            name = str(err)
        raise InteropUnavailable(f"{what} failed: {name}")
    if isinstance(result, tuple):
        return result[1] if len(result) == 2 else result[1:]
    return None


@dataclass
class RegisteredTexture:
    gl_texture: int
    width: int
    height: int
    resource: object
    texel_bytes: int = 4


class CudaGLTextures:
    """A set of GL RGBA textures written from (or read into) CUDA tensors each frame: RGBA8 (the
    avatars' textures) or RGBA16F (the refinement's layer and correction, ``texel_bytes=8``)."""

    def __init__(self):
        self._cudart = _cudart()
        self._textures: list[RegisteredTexture] = []

    def register(self, gl_texture: int, width: int, height: int, *, read_only: bool = False,
                 texel_bytes: int = 4) -> int:
        """Registers an allocated 2D texture (GL_RGBA8 / SRGB8_ALPHA8, or GL_RGBA16F with
        ``texel_bytes=8``): written whole each frame, or only read (``read_only``); returns its slot."""
        flags = _REGISTER_READ_ONLY if read_only else _REGISTER_WRITE_DISCARD
        res = _check(self._cudart.cudaGraphicsGLRegisterImage(int(gl_texture), GL_TEXTURE_2D, flags),
                     f"cudaGraphicsGLRegisterImage(texture {gl_texture})")
        self._textures.append(RegisteredTexture(int(gl_texture), width, height, res, texel_bytes))
        return len(self._textures) - 1

    def read(self, tensors: dict[int, "object"], level: int = 0, stream: int = 0) -> None:
        """Copies mip ``level`` of each slot's texture into ``{slot: contiguous CUDA tensor
        (H >> level, W >> level, 4)}`` of the texture's texel size, on ``stream``."""
        self._transfer(tensors, level, stream, into_texture=False)

    def copy(self, tensors: dict[int, "object"], stream: int = 0) -> None:
        """Copies ``{slot: CUDA tensor (H, W, 4), contiguous, of the texture's texel size}`` into the textures.

        ``stream`` is the raw CUDA stream handle the tensors were produced on (e.g.
        ``torch.cuda.current_stream().cuda_stream``), so the copies queue after the decoder.
        """
        self._transfer(tensors, 0, stream, into_texture=True)

    def _transfer(self, tensors: dict, level: int, stream: int, into_texture: bool) -> None:
        if not tensors:
            return
        cudart = self._cudart
        slots = sorted(tensors)
        resources = [self._textures[s].resource for s in slots]
        self._map(resources, stream)
        try:
            for slot in slots:
                tex, t = self._textures[slot], tensors[slot]
                w, h = max(tex.width >> level, 1), max(tex.height >> level, 1)
                if tuple(t.shape) != (h, w, 4) or t.element_size() * 4 != tex.texel_bytes or not t.is_contiguous():
                    raise ValueError(f"slot {slot}: need a contiguous ({h}, {w}, 4) tensor of "
                                     f"{tex.texel_bytes // 4}-byte channels, got {tuple(t.shape)} {t.dtype}")
                array = _check(cudart.cudaGraphicsSubResourceGetMappedArray(tex.resource, 0, level),
                               "get mapped array")
                pitch = w * tex.texel_bytes
                kind = cudart.cudaMemcpyKind.cudaMemcpyDeviceToDevice
                if into_texture:
                    _check(cudart.cudaMemcpy2DToArrayAsync(array, 0, 0, t.data_ptr(), pitch, pitch, h, kind, stream),
                           "cudaMemcpy2DToArrayAsync")
                else:
                    _check(cudart.cudaMemcpy2DFromArrayAsync(t.data_ptr(), pitch, array, 0, 0, pitch, h, kind, stream),
                           "cudaMemcpy2DFromArrayAsync")
        finally:
            self._unmap(resources, stream)

    def _map(self, resources: list, stream: int) -> None:
        try:
            _check(self._cudart.cudaGraphicsMapResources(len(resources), resources, stream), "map resources")
        except TypeError:
            # Bindings that take one resource per call: map individually (same stream, same order).
            for r in resources:
                _check(self._cudart.cudaGraphicsMapResources(1, r, stream), "map resource")

    def _unmap(self, resources: list, stream: int) -> None:
        try:
            _check(self._cudart.cudaGraphicsUnmapResources(len(resources), resources, stream), "unmap resources")
        except TypeError:
            for r in resources:
                _check(self._cudart.cudaGraphicsUnmapResources(1, r, stream), "unmap resource")

    def close(self) -> None:
        """Unregister before the GL context dies."""
        for tex in self._textures:
            try:
                _check(self._cudart.cudaGraphicsUnregisterResource(tex.resource), "unregister")
            except InteropUnavailable as exc:
                log.warning("%s", exc)
        self._textures.clear()

    def __len__(self) -> int:
        return len(self._textures)


def try_create() -> CudaGLTextures | None:
    """The interop set, or None (logged once by the caller) when CUDA is not usable here."""
    try:
        import torch

        if not torch.cuda.is_available():
            return None
        return CudaGLTextures()
    except InteropUnavailable as exc:
        log.info("CUDA-GL interop unavailable: %s", exc)
        return None
