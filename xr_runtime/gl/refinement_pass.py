"""The screen-space refinement in the render node: the avatar drawn alone into a layer, corrected
by the package's network, composited into the eye with depth.

Per eye and refined avatar (``RefinementPass.prepare``, before the eye's own draws):

1. The crop: the deformed mesh projected into this eye, its bounding square × the network's
   margin — what the builder trained on (``inference/head_model/refinement.crop_square``).
2. The layer: the avatar alone rendered into that square at L = S·2^k pixels (k ≥ 1, L ≥ the
   crop's size on screen), as premultiplied sRGB-encoded colour into an RGBA16F texture (what the
   network saw: texture bytes / 255 × alpha), with its own depth. Its mip level k is the crop at
   the network's size S, box-filtered from ≥ 2×2 samples, as the builder's 2×2 supersampling.
3. The correction: level k, cut by the chin line as in training, through the network; the
   correction (output − input) goes into an S² RGBA16F texture. ``HostCorrection``: read back
   S² floats, ``Refiner`` on the CPU, upload (the CPU path; its cost is why it is off by
   default there: ``docs/AVATAR.md``). ``CudaCorrection``: the layer's level k and the correction
   texture mapped into CUDA (CUDA-GL interop), ``CudaRefiner``'s captured graph in between; no
   host copy.
4. The composite (``composite``, in the renderer's two passes in place of the mesh's draws): a
   quad over the crop samples the full-resolution layer, adds the bilinear correction above the
   chin line, decodes to linear and blends over the scene; depth is the layer's where the mesh
   was drawn and the head centre's where the network adds coverage beyond it, so the room and
   other avatars occlude it as they occlude the mesh.

Stereo consistency and no shimmer come from the network being a deterministic per-pixel function
of its input (``head_model/refinement.py``); each eye runs it on its own view.
"""
from __future__ import annotations

import collections
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
from OpenGL import GL

from core.percentiles import percentiles
from geometry.edge_alpha import OPAQUE_ALPHA
from inference.head_model.matte import CHIN, FOREHEAD, above_chin
from inference.head_model.refinement import crop_square
from xr_runtime.avatars.mesh import AvatarMeshData
from xr_runtime.gl.shaders import build_program, uniform_locations

log = logging.getLogger(__name__)

MAX_LAYER = 1024  # layer side cap (pixels): a head filling the eye is refined at this resolution


@dataclass
class RefinementStats:
    eyes_refined: int = 0
    eyes_skipped: int = 0        # head behind the eye or off screen: drawn without refinement
    errors: int = 0              # a correction that failed: that avatar falls back to the mesh
    # Per refined eye (CPU wall, incl. transfers), the most recent ones: a render node runs for hours.
    correction_ms: collections.deque = field(default_factory=lambda: collections.deque(maxlen=10_000))

    def summary(self) -> dict:
        p50 = percentiles(self.correction_ms, (50,))["p50"]
        return {"eyes_refined": self.eyes_refined, "eyes_skipped": self.eyes_skipped, "errors": self.errors,
                "correction_ms_p50": None if p50 is None else round(p50, 3)}


@dataclass(frozen=True)
class CropPlan:
    """One eye's refinement of one avatar, ready to composite."""

    layer: "RefinementLayer"
    rect_ndc: tuple[float, float, float, float]  # x0, y0, x1, y1 of the crop in the eye's NDC
    chin_uv: tuple[float, float]
    up_uv: tuple[float, float]
    fill_depth: float


class RefinementLayer:
    """GL objects of one avatar's layer: an L² RGBA16F colour texture with mips and a depth
    texture in one framebuffer (reallocated when L changes), and the S² correction texture."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.side = 0
        self.level = 0
        self.color = self.depth = self.fbo = 0
        self.delta = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.delta)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_RGBA16F, size, size)
        _sampling(GL.GL_LINEAR, GL.GL_CLAMP_TO_BORDER)
        GL.glTexParameterfv(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_BORDER_COLOR, (0.0, 0.0, 0.0, 0.0))
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def ensure(self, side: int) -> bool:
        """Allocate an L = ``side`` layer; True when the textures were (re)made (interop must
        register them again)."""
        if side == self.side:
            return False
        self._delete_layer()
        self.side = side
        self.level = int(round(math.log2(side / self.size)))
        self.color = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.color)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, self.level + 1, GL.GL_RGBA16F, side, side)
        _sampling(GL.GL_LINEAR_MIPMAP_LINEAR, GL.GL_CLAMP_TO_EDGE)
        self.depth = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.depth)
        GL.glTexStorage2D(GL.GL_TEXTURE_2D, 1, GL.GL_DEPTH_COMPONENT24, side, side)
        _sampling(GL.GL_NEAREST, GL.GL_CLAMP_TO_EDGE)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self.fbo = int(GL.glGenFramebuffers(1))
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_COLOR_ATTACHMENT0, GL.GL_TEXTURE_2D, self.color, 0)
        GL.glFramebufferTexture2D(GL.GL_FRAMEBUFFER, GL.GL_DEPTH_ATTACHMENT, GL.GL_TEXTURE_2D, self.depth, 0)
        status = GL.glCheckFramebufferStatus(GL.GL_FRAMEBUFFER)
        if status != GL.GL_FRAMEBUFFER_COMPLETE:
            from xr_runtime.gl.target import FramebufferError

            raise FramebufferError(f"refinement layer framebuffer incomplete (0x{int(status):04x})")
        return True

    def begin(self) -> None:
        GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, self.fbo)
        GL.glViewport(0, 0, self.side, self.side)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)  # the layer holds sRGB-encoded values as plain floats
        GL.glClearColor(0.0, 0.0, 0.0, 0.0)
        GL.glClearDepth(1.0)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)

    def finish(self) -> None:
        """Box-filter the layer down to the network's size (its mip chain)."""
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.color)
        GL.glGenerateMipmap(GL.GL_TEXTURE_2D)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def read_input(self) -> np.ndarray:
        """The crop at the network's size: (S, S, 4) float32, top row first (image order)."""
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.color)
        GL.glPixelStorei(GL.GL_PACK_ALIGNMENT, 4)
        data = GL.glGetTexImage(GL.GL_TEXTURE_2D, self.level, GL.GL_RGBA, GL.GL_FLOAT)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        s = self.size
        return np.frombuffer(np.ascontiguousarray(data), np.float32).reshape(s, s, 4)[::-1]

    def write_delta(self, delta: np.ndarray) -> None:
        """(S, S, 4) float32 correction, top row first."""
        data = np.ascontiguousarray(delta[::-1], np.float32)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.delta)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexSubImage2D(GL.GL_TEXTURE_2D, 0, 0, 0, self.size, self.size, GL.GL_RGBA, GL.GL_FLOAT, data)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def _delete_layer(self) -> None:
        if self.fbo:
            GL.glDeleteFramebuffers(1, [self.fbo])
        names = [t for t in (self.color, self.depth) if t]
        if names:
            GL.glDeleteTextures(names)
        self.color = self.depth = self.fbo = 0
        self.side = 0

    def delete(self) -> None:
        self._delete_layer()
        if self.delta:
            GL.glDeleteTextures([self.delta])
        self.delta = 0


def _sampling(filter_min: int, wrap: int) -> None:
    GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MIN_FILTER, filter_min)
    GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_MAG_FILTER,
                       GL.GL_NEAREST if filter_min == GL.GL_NEAREST else GL.GL_LINEAR)
    GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_S, wrap)
    GL.glTexParameteri(GL.GL_TEXTURE_2D, GL.GL_TEXTURE_WRAP_T, wrap)


class HostCorrection:
    """CPU path: the layer's level k read back, ``Refiner`` (torch, ``threads`` threads), the
    correction uploaded."""

    kind = "cpu"

    def __init__(self, refiner) -> None:
        self.refiner = refiner
        self.size = refiner.config.size
        self.margin = refiner.config.margin

    def correct(self, layer: RefinementLayer, mask: np.ndarray) -> None:
        x = layer.read_input() * mask[..., None]
        delta = self.refiner.correction(np.ascontiguousarray(x.transpose(2, 0, 1)))
        layer.write_delta(delta.transpose(1, 2, 0))

    def layer_changed(self, layer: RefinementLayer) -> None:
        pass

    def close(self) -> None:
        pass


class CudaCorrection:
    """GPU path: the layer's level k and the correction texture mapped into CUDA (CUDA-GL
    interop, ``cuda_interop.CudaGLTextures``); ``CudaRefiner`` (fp16, channels-last, its forward a
    captured CUDA graph) in between, on the current torch stream. Nothing crosses to the host but
    the S² chin mask. Needs an NVIDIA GL context (EGL device or GLX on the NVIDIA driver); written
    for the GPU machines, not run here (no GPU)."""

    kind = "cuda"

    def __init__(self, net, config) -> None:
        import torch

        from inference.head_model.refinement import CudaRefiner
        from xr_runtime.gl.cuda_interop import CudaGLTextures

        self._torch = torch
        self.refiner = CudaRefiner(net, config, batch=1)
        self.size = config.size
        self.margin = config.margin
        self.interop = CudaGLTextures()
        self._layer_slot: int | None = None
        self._delta_slot: int | None = None
        s = config.size
        self._in = torch.empty(s, s, 4, device="cuda", dtype=torch.half)

    def layer_changed(self, layer: RefinementLayer) -> None:
        """(Re-)register the layer's textures: a new L reallocated them."""
        self.interop.close()
        self._layer_slot = self.interop.register(layer.color, layer.side, layer.side, read_only=True, texel_bytes=8)
        self._delta_slot = self.interop.register(layer.delta, layer.size, layer.size, texel_bytes=8)

    def correct(self, layer: RefinementLayer, mask: np.ndarray) -> None:
        torch = self._torch
        stream = torch.cuda.current_stream().cuda_stream
        self.interop.read({self._layer_slot: self._in}, level=layer.level, stream=stream)
        m = torch.from_numpy(np.ascontiguousarray(mask[::-1])).to("cuda", torch.half, non_blocking=True)
        x = (self._in * m[..., None]).permute(2, 0, 1)[None].flip(-2)   # GL rows are bottom-up
        out = self.refiner.refine(x)
        delta = (out - x)[0].flip(-2).permute(1, 2, 0).contiguous()
        self.interop.copy({self._delta_slot: delta}, stream=stream)

    def close(self) -> None:
        self.interop.close()


class RefinementPass:
    """Owned by the renderer: the composite program and each refined avatar's layer."""

    def __init__(self) -> None:
        self._program = build_program("refine_composite.vert", "refine_composite.frag",
                                      {"OPAQUE_ALPHA": f"{OPAQUE_ALPHA:.5f}"})
        self._u = uniform_locations(self._program, ["u_rect", "u_layer", "u_layer_depth", "u_delta", "u_chin",
                                                    "u_up", "u_fill_depth", "u_opacity", "u_pass"])
        GL.glUseProgram(self._program)
        for name, unit in (("u_layer", 0), ("u_layer_depth", 1), ("u_delta", 2)):
            GL.glUniform1i(self._u[name], unit)
        GL.glUseProgram(0)
        self._vao = int(GL.glGenVertexArrays(1))
        self._avatars: dict[int, tuple[object, RefinementLayer, AvatarMeshData]] = {}
        self.stats = RefinementStats()
        self._failed: set[int] = set()

    def attach(self, avatar_id: int, correction, mesh: AvatarMeshData) -> None:
        self.detach(avatar_id)
        self._avatars[avatar_id] = (correction, RefinementLayer(correction.size), mesh)
        self._failed.discard(avatar_id)

    def detach(self, avatar_id: int) -> None:
        entry = self._avatars.pop(avatar_id, None)
        if entry is not None:
            entry[0].close()
            entry[1].delete()

    def refines(self, avatar_id: int) -> bool:
        return avatar_id in self._avatars and avatar_id not in self._failed

    def kinds(self) -> dict[int, str]:
        return {i: c.kind for i, (c, _, _) in self._avatars.items() if i not in self._failed}

    def prepare(self, avatar_id: int, model: np.ndarray, weights: np.ndarray | None, view_proj: np.ndarray,
                width: int, height: int, draw_layer) -> CropPlan | None:
        """Render and correct one avatar's layer for one eye (``draw_layer(crop_view_proj)`` draws
        the avatar into the bound layer). None: draw it unrefined (behind the eye, off screen, or
        its correction failed)."""
        correction, layer, mesh = self._avatars[avatar_id]
        crop = self._crop(mesh, model, weights, view_proj, width, height, correction.margin)
        if crop is None:
            self.stats.eyes_skipped += 1
            return None
        (x0, y0, side), landmarks, centre_depth = crop
        s = correction.size
        level = max(1, min(math.ceil(math.log2(max(side, 2 * s) / s)), int(math.log2(max(MAX_LAYER // s, 2)))))
        try:
            if layer.ensure(s << level):
                correction.layer_changed(layer)
            layer.begin()
            draw_layer(crop_matrix(x0, y0, side, width, height) @ view_proj)
            layer.finish()
            t0 = time.perf_counter()
            local = (landmarks - np.array([x0, y0])) * (s / side)
            correction.correct(layer, above_chin((s, s), local).astype(np.float32))
            self.stats.correction_ms.append((time.perf_counter() - t0) * 1e3)
        except Exception as exc:  # never the frame: this avatar is drawn without refinement from now on
            self.stats.errors += 1
            self._failed.add(avatar_id)
            log.warning("screen-space refinement failed for avatar %d (%s: %s); drawing it without",
                        avatar_id, type(exc).__name__, exc)
            return None
        self.stats.eyes_refined += 1
        chin, forehead = landmarks[CHIN], landmarks[FOREHEAD]
        to_uv = lambda p: ((p[0] - x0) / side, 1.0 - (p[1] - y0) / side)  # noqa: E731
        up = forehead - chin
        up = up / max(float(np.linalg.norm(up)), 1e-9)
        rect = (2 * x0 / width - 1, 1 - 2 * (y0 + side) / height, 2 * (x0 + side) / width - 1, 1 - 2 * y0 / height)
        return CropPlan(layer, tuple(float(v) for v in rect), to_uv(chin), (float(up[0]), float(-up[1])),
                        centre_depth)

    @staticmethod
    def _crop(mesh: AvatarMeshData, model, weights, view_proj, width: int, height: int, margin: float):
        p = mesh.positions.astype(np.float32)
        if weights is not None and mesh.blendshape_count:
            w = np.asarray(weights, np.float32).reshape(-1)[:mesh.blendshape_count]
            p = p + np.tensordot(w, mesh.blendshapes[:len(w)], axes=1)
        m = np.asarray(view_proj, np.float64) @ np.asarray(model, np.float64)
        clip = np.concatenate([p, np.ones((len(p), 1), np.float32)], 1) @ m.T
        if (clip[:, 3] <= 1e-4).any():
            return None
        ndc = clip[:, :3] / clip[:, 3:4]
        px = np.stack([(ndc[:, 0] + 1) * 0.5 * width, (1 - ndc[:, 1]) * 0.5 * height], 1)
        x0, y0, side = crop_square(px, margin)
        if x0 >= width or y0 >= height or x0 + side <= 0 or y0 + side <= 0:
            return None
        centre = m @ np.array([0.0, 0.0, 0.0, 1.0])
        centre_depth = float(np.clip(0.5 * centre[2] / centre[3] + 0.5, 0.0, 1.0))
        return (x0, y0, side), px, centre_depth

    def composite(self, plan: CropPlan, render_pass: int, opacity: float) -> None:
        """Draw the refined layer into the bound eye framebuffer (depth test on, the caller's
        blend state and depth mask)."""
        u = self._u
        GL.glUseProgram(self._program)
        GL.glUniform4f(u["u_rect"], *plan.rect_ndc)
        GL.glUniform2f(u["u_chin"], *plan.chin_uv)
        GL.glUniform2f(u["u_up"], *plan.up_uv)
        GL.glUniform1f(u["u_fill_depth"], plan.fill_depth)
        GL.glUniform1f(u["u_opacity"], float(opacity))
        GL.glUniform1i(u["u_pass"], render_pass)
        for unit, tex in ((0, plan.layer.color), (1, plan.layer.depth), (2, plan.layer.delta)):
            GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
            GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
        GL.glBindVertexArray(self._vao)
        GL.glDrawArrays(GL.GL_TRIANGLE_STRIP, 0, 4)
        GL.glBindVertexArray(0)
        for unit in (2, 1, 0):
            GL.glActiveTexture(GL.GL_TEXTURE0 + unit)
            GL.glBindTexture(GL.GL_TEXTURE_2D, 0)

    def close(self) -> None:
        for avatar_id in list(self._avatars):
            self.detach(avatar_id)
        GL.glDeleteVertexArrays(1, [self._vao])
        GL.glDeleteProgram(self._program)


def crop_matrix(x0: float, y0: float, side: float, width: int, height: int) -> np.ndarray:
    """Clip-space map taking the eye's pixel square (x0, y0, side) (image coordinates, top-left
    origin) onto the layer's whole viewport; depth is untouched, so the layer's depth values are
    the eye's."""
    ax, ay = width / side, height / side
    c = np.eye(4, dtype=np.float64)
    c[0, 0], c[0, 3] = ax, ax - 2 * x0 / side - 1
    c[1, 1], c[1, 3] = ay, 1 - ay + 2 * y0 / side
    return c.astype(np.float32)
