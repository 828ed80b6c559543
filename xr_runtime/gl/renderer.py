"""The scene renderer (OpenGL 3.3+ core profile): sky, room, floor grid, and blendshape avatars.

Usage, with a current GL context:

    renderer = Renderer()
    head = renderer.add_avatar(mesh)                      # AvatarMeshData, uploaded once
    target = RenderTarget(640, 480)                       # or an OpenXR swapchain image
    renderer.draw(view, proj, [AvatarDrawState(head, model, weights, rgba, serial)], target)
    pixels = target.read_rgba()

An avatar given a screen-space refinement (`set_refinement`: the package's network, on the CPU or
through CUDA-GL interop; `refinement_pass.py`) is drawn, per eye, into its own layer first, then
corrected and composited in place of its mesh.

`view` and `proj` are 4×4 float32 matrices in math layout (see `geometry.transforms`); one `draw` per eye.
All colours are linear; targets are sRGB and GL_FRAMEBUFFER_SRGB is on while drawing, so the
stored bytes are correctly encoded sRGB (what displays and OpenXR's sRGB swapchains expect).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
from OpenGL import GL
from OpenGL.raw.GL.VERSION.GL_2_0 import glVertexAttribPointer as raw_vertex_attrib_pointer

from geometry.edge_alpha import EDGE_COS, OPAQUE_ALPHA
from xr_runtime.avatars.eyelids import GAZE_ELLIPSE, LID_SKIN_BELOW, LID_SKIN_SHIFT, LID_SKIN_X, EyelidRig
from xr_runtime.avatars.mesh import MAX_BLENDSHAPES, AvatarMeshData
from xr_runtime.gl.avatar_drawing import AvatarGPU
from xr_runtime.gl.shaders import build_program, uniform_locations
from xr_runtime.gl.target import RenderTarget
from xr_runtime.scene.room_geometry import FLOATS_PER_VERTEX, RoomConfig, build_room

Color = tuple[float, float, float]


@dataclass(frozen=True)
class SceneStyle:
    """Look of the default environment. Colours are linear RGB."""

    room: RoomConfig = field(default_factory=RoomConfig)
    sky_zenith: Color = (0.10, 0.25, 0.60)
    sky_horizon: Color = (0.60, 0.70, 0.85)
    sky_ground: Color = (0.08, 0.08, 0.09)
    grid_color: Color = (0.05, 0.05, 0.06)
    grid_spacing: float = 0.5
    light_direction: Color = (0.35, 0.85, 0.40)  # towards the light; normalised on use
    light_color: Color = (0.75, 0.73, 0.70)
    ambient: Color = (0.35, 0.37, 0.40)
    show_sky: bool = True
    show_room: bool = True


@dataclass
class AvatarDrawState:
    """What to draw of one avatar this frame.

    `texture` (H, W, 4) uint8 sRGB or None to keep the last one; `texture_serial` identifies it
    so that the second eye's draw does not upload it again.
    """

    avatar: "AvatarHandle"
    model_matrix: np.ndarray                   # (4, 4) float32, model → world (head pose)
    weights: np.ndarray | None = None          # (K,) blendshape weights; None = neutral
    texture: np.ndarray | None = None
    texture_serial: int | None = None
    opacity: float = 1.0
    # The driver's lids and gaze (inference.engine.eye_state.EyeState) for avatars with an eyelid
    # rig (xr_runtime.avatars.eyelids); None: the network's own eyes.
    eyes: object | None = None
    # Model → world of the body (an avatar with a torso: the head's placement and translation
    # without its rotation, xr_runtime.scene.placement.body_model_matrix); None: the head's.
    body_matrix: np.ndarray | None = None


@dataclass(frozen=True)
class AvatarHandle:
    """Returned by `Renderer.add_avatar`; identifies the uploaded avatar."""

    id: int
    vertex_count: int
    blendshape_count: int


def _upload_matrix(location: int, matrix: np.ndarray) -> None:
    GL.glUniformMatrix4fv(location, 1, GL.GL_TRUE, np.ascontiguousarray(matrix, dtype=np.float32))


class Renderer:
    """Owns the GL programs and buffers of the scene and of every added avatar."""

    def __init__(self, style: SceneStyle | None = None) -> None:
        self.style = style or SceneStyle()
        self._avatars: dict[int, AvatarGPU] = {}
        self._rigs: dict[int, EyelidRig | None] = {}
        self._eye_textures: dict[int, int] = {}
        self._soft: dict[int, bool] = {}  # avatars with a learned alpha: drawn in the second pass too
        self._meshes: dict[int, AvatarMeshData] = {}
        self._refinement = None  # refinement_pass.RefinementPass, made with the first refined avatar
        self._next_avatar_id = 1
        self._sky_program = build_program("sky.vert", "sky.frag")
        self._scene_program = build_program("scene.vert", "scene.frag")
        self._avatar_program = build_program("avatar.vert", "avatar.frag",
                                             {"MAX_BLENDSHAPES": MAX_BLENDSHAPES, "LID_X": f"{LID_SKIN_X:.3f}",
                                              "GAZE_EX": f"{GAZE_ELLIPSE[0]:.3f}", "GAZE_EY": f"{GAZE_ELLIPSE[1]:.3f}",
                                              "EDGE_COS_LO": f"{EDGE_COS[0]:.4f}", "EDGE_COS_HI": f"{EDGE_COS[1]:.4f}",
                                              "OPAQUE_ALPHA": f"{OPAQUE_ALPHA:.5f}"})
        self._torso_program = build_program("torso.vert", "torso.frag")
        self._torso_uniforms = uniform_locations(self._torso_program,
                                                 ["u_view_proj", "u_body", "u_texture", "u_opacity"])
        self._sky_uniforms = uniform_locations(
            self._sky_program, ["u_inv_view_proj", "u_zenith", "u_horizon", "u_ground"])
        self._scene_uniforms = uniform_locations(
            self._scene_program, ["u_view_proj", "u_light_dir", "u_light_color", "u_ambient",
                                  "u_grid_color", "u_grid_spacing"])
        self._avatar_uniforms = uniform_locations(
            self._avatar_program, ["u_view_proj", "u_model", "u_body", "u_basis", "u_vertex_count",
                                   "u_blend_count", "u_weights", "u_texture", "u_opacity",
                                   "u_eye_count", "u_eye_centre", "u_eye_axes", "u_gaze_uv",
                                   "u_eye_texture", "u_eye_mix", "u_closure", "u_lid_skin", "u_lid_skin_below",
                                   "u_eye_pos", "u_pass", "u_layer"])
        GL.glUseProgram(self._avatar_program)
        GL.glUniform1i(self._avatar_uniforms["u_texture"], 0)
        GL.glUniform1i(self._avatar_uniforms["u_basis"], 1)
        GL.glUniform1i(self._avatar_uniforms["u_eye_texture"], 2)
        GL.glUseProgram(0)
        renderer_name = (GL.glGetString(GL.GL_RENDERER) or b"").decode().lower()
        self.software_rasteriser = any(n in renderer_name for n in ("llvmpipe", "softpipe", "swrast"))
        self._empty_vao = int(GL.glGenVertexArrays(1))  # core profile needs a VAO bound to draw
        self._room_vao, self._room_buffers, self._room_index_count = self._upload_room()

    def _upload_room(self) -> tuple[int, list[int], int]:
        return upload_room_mesh(*build_room(self.style.room))

    # ------------------------------------------------------------------------------ avatars

    def add_avatar(self, mesh: AvatarMeshData, texture_size: tuple[int, int] = (256, 256),
                   mipmaps: bool | None = None, soft_edges: bool = True) -> AvatarHandle:
        """Upload a mesh and its blendshape basis; `texture_size` is (height, width).

        `soft_edges=False` promises an opaque texture (A = 255, no learned alpha): the avatar is
        then drawn in the opaque pass only, and skips the second (soft-outline) pass.

        `mipmaps=None` decides by the GL implementation: on for GPUs, off for software
        rasterisers, where regenerating them costs 1–2.6 ms per 256²–512² upload (llvmpipe,
        measured) against 0.03–0.1 ms for the upload itself.
        """
        if mipmaps is None:
            mipmaps = not self.software_rasteriser
        handle = AvatarHandle(self._next_avatar_id, mesh.vertex_count, mesh.blendshape_count)
        rig = EyelidRig.for_mesh(mesh)
        self._avatars[handle.id] = AvatarGPU(rig.mesh if rig else mesh, texture_size, mipmaps)
        self._rigs[handle.id] = rig
        self._soft[handle.id] = bool(soft_edges)
        self._meshes[handle.id] = mesh
        self._next_avatar_id += 1
        return handle

    def remove_avatar(self, handle: AvatarHandle) -> None:
        self._avatars.pop(handle.id).delete()
        self._rigs.pop(handle.id, None)
        self._soft.pop(handle.id, None)
        self._meshes.pop(handle.id, None)
        if self._refinement is not None:
            self._refinement.detach(handle.id)
        tex = self._eye_textures.pop(handle.id, None)
        if tex:
            GL.glDeleteTextures([tex])

    def set_refinement(self, handle: AvatarHandle, correction) -> None:
        """Refine this avatar in screen space from now on: ``correction`` is a
        `refinement_pass.HostCorrection` (CPU) or `CudaCorrection` (CUDA-GL interop). An eye where
        its head is behind the viewer or off screen, or a correction that fails (logged, counted,
        never the frame), draws the mesh as without one."""
        from xr_runtime.gl.refinement_pass import RefinementPass

        if self._refinement is None:
            self._refinement = RefinementPass()
        self._refinement.attach(handle.id, correction, self._meshes[handle.id])

    def refinement_summary(self) -> dict:
        """Counters of the screen-space pass, and which avatars it refines (id → cpu / cuda)."""
        if self._refinement is None:
            return {"avatars": {}}
        return {"avatars": {str(k): v for k, v in self._refinement.kinds().items()},
                **self._refinement.stats.summary()}

    def set_eye_texture(self, handle: AvatarHandle, rgba: np.ndarray) -> bool:
        """The avatar's relaxed open-eyed texture (her decoded neutral face, (H, W, 4) uint8 sRGB):
        with an eyelid rig, the eye regions are drawn from it, so the network's texture (whose
        eyes narrow with every laugh it learned) no longer decides how open her eyes look; the lid
        geometry does. False (and nothing kept) for an avatar without a rig."""
        if self._rigs.get(handle.id) is None:
            return False
        data = np.ascontiguousarray(rgba, dtype=np.uint8)
        if data.ndim != 3 or data.shape[2] != 4:
            raise ValueError(f"eye texture must be (H, W, 4) uint8, got {data.shape}")
        tex = self._eye_textures.get(handle.id) or int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, tex)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_SRGB8_ALPHA8, data.shape[1], data.shape[0], 0,
                        GL.GL_RGBA, GL.GL_UNSIGNED_BYTE, data)
        for name, value in ((GL.GL_TEXTURE_MIN_FILTER, GL.GL_LINEAR), (GL.GL_TEXTURE_MAG_FILTER, GL.GL_LINEAR),
                            (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE), (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)):
            GL.glTexParameteri(GL.GL_TEXTURE_2D, name, value)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self._eye_textures[handle.id] = tex
        return True

    def avatar_texture(self, handle: AvatarHandle) -> tuple[int, int, int] | None:
        """(GL texture name, height, width) of the avatar's RGBA8 texture storage, for writers
        such as CUDA-GL interop (register it as GL_TEXTURE_2D); None when the GL lacks texture
        views and the texture is sRGB-only (CUDA cannot register that format).

        After writing level 0, call `avatar_texture_written`. A size change (a host upload of
        another size) replaces the texture: register again.
        """
        gpu = self._avatars[handle.id]
        if not gpu.interop_capable:
            return None
        return gpu.storage_texture, *gpu.texture_size

    def avatar_texture_written(self, handle: AvatarHandle, serial: int | None = None) -> None:
        """Tell the renderer an external writer updated the texture (refreshes mipmaps)."""
        gpu = self._avatars[handle.id]
        gpu.texture_written()
        gpu.texture_serial = serial

    # ------------------------------------------------------------------------------ drawing

    def draw(self, view: np.ndarray, projection: np.ndarray,
             avatars: Sequence[AvatarDrawState] = (), target: RenderTarget | None = None,
             overlay: Callable[[int, int], None] | None = None) -> None:
        """Draw one view: sky, room, then avatars. Into `target`, else the bound framebuffer.
        `overlay(width, height)` draws last, in target pixels, before a multisampled target resolves."""
        for state in avatars:
            if state.texture is not None:
                self._avatars[state.avatar.id].set_texture(state.texture, state.texture_serial)
        view_proj = (projection @ view).astype(np.float32)
        eye = np.linalg.inv(np.asarray(view, np.float64))[:3, 3]
        plans = self._refine_layers(eye, view_proj, avatars, target) if self._refinement is not None else {}
        if target is not None:
            target.bind()
        GL.glEnable(GL.GL_FRAMEBUFFER_SRGB)
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glClearColor(*self.style.sky_horizon, 1.0)  # linear; encoded because of FRAMEBUFFER_SRGB
        GL.glClearDepth(1.0)
        GL.glClear(GL.GL_COLOR_BUFFER_BIT | GL.GL_DEPTH_BUFFER_BIT)
        if self.style.show_sky:
            self._draw_sky(view, projection)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        if self.style.show_room:
            self._draw_room(view_proj)
        if avatars:
            self._draw_avatars(view_proj, avatars, eye, plans)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glBindVertexArray(0)
        GL.glUseProgram(0)
        if overlay is not None and target is not None:
            overlay(target.width, target.height)
        if target is not None:
            target.resolve()

    def _refine_layers(self, eye: np.ndarray, view_proj, avatars: Sequence[AvatarDrawState], target) -> dict:
        """Each refined avatar's layer for this eye, rendered and corrected (before the eye's own
        draws, which they would otherwise interrupt): avatar id → CropPlan."""
        refining = [s for s in avatars if self._refinement.refines(s.avatar.id)]
        if not refining:
            return {}
        if target is not None:
            width, height = target.width, target.height
        else:
            vp = [int(v) for v in GL.glGetIntegerv(GL.GL_VIEWPORT)]
            width, height = vp[2], vp[3]
            bound = int(GL.glGetIntegerv(GL.GL_DRAW_FRAMEBUFFER_BINDING))
        u = self._avatar_uniforms
        plans = {}
        GL.glDisable(GL.GL_CULL_FACE)
        GL.glEnable(GL.GL_DEPTH_TEST)
        GL.glDepthFunc(GL.GL_LESS)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_ONE, GL.GL_ONE_MINUS_SRC_ALPHA)  # premultiplied into a cleared layer
        weights_buffer = np.zeros(MAX_BLENDSHAPES, dtype=np.float32)
        for state in refining:
            def draw_layer(crop_view_proj, state=state):
                GL.glUseProgram(self._avatar_program)
                _upload_matrix(u["u_view_proj"], crop_view_proj)
                GL.glUniform3f(u["u_eye_pos"], *(float(v) for v in eye))
                GL.glUniform1i(u["u_layer"], 1)
                for render_pass in (0, 1):
                    GL.glDepthMask(GL.GL_TRUE if render_pass == 0 else GL.GL_FALSE)
                    GL.glUniform1i(u["u_pass"], render_pass)
                    self._draw_avatar(state, weights_buffer, opacity=1.0)  # fading is the composite's
                GL.glUniform1i(u["u_layer"], 0)
                GL.glDepthMask(GL.GL_TRUE)
            plan = self._refinement.prepare(state.avatar.id, state.model_matrix, state.weights, view_proj,
                                            width, height, draw_layer)
            if plan is not None:
                plans[state.avatar.id] = plan
        GL.glDisable(GL.GL_BLEND)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glUseProgram(0)
        if target is None:
            GL.glBindFramebuffer(GL.GL_FRAMEBUFFER, bound)
            GL.glViewport(*vp)
        return plans

    def _draw_sky(self, view: np.ndarray, projection: np.ndarray) -> None:
        rotation_only = view.copy()
        rotation_only[:3, 3] = 0.0
        inverse = np.linalg.inv(projection.astype(np.float64) @ rotation_only).astype(np.float32)
        style, u = self.style, self._sky_uniforms
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDepthMask(GL.GL_FALSE)
        GL.glUseProgram(self._sky_program)
        _upload_matrix(u["u_inv_view_proj"], inverse)
        GL.glUniform3f(u["u_zenith"], *style.sky_zenith)
        GL.glUniform3f(u["u_horizon"], *style.sky_horizon)
        GL.glUniform3f(u["u_ground"], *style.sky_ground)
        GL.glBindVertexArray(self._empty_vao)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 3)
        GL.glDepthMask(GL.GL_TRUE)

    def _draw_room(self, view_proj: np.ndarray) -> None:
        style, u = self.style, self._scene_uniforms
        light = np.asarray(style.light_direction, dtype=np.float32)
        light /= np.linalg.norm(light)
        GL.glUseProgram(self._scene_program)
        _upload_matrix(u["u_view_proj"], view_proj)
        GL.glUniform3f(u["u_light_dir"], *light)
        GL.glUniform3f(u["u_light_color"], *style.light_color)
        GL.glUniform3f(u["u_ambient"], *style.ambient)
        GL.glUniform3f(u["u_grid_color"], *style.grid_color)
        GL.glUniform1f(u["u_grid_spacing"], style.grid_spacing)
        GL.glBindVertexArray(self._room_vao)
        GL.glDrawElements(GL.GL_TRIANGLES, self._room_index_count, GL.GL_UNSIGNED_INT, ctypes.c_void_p(0))

    def _draw_avatars(self, view_proj: np.ndarray, avatars: Sequence[AvatarDrawState], eye_pos: np.ndarray,
                      plans: dict) -> None:
        u = self._avatar_uniforms
        GL.glUseProgram(self._avatar_program)
        _upload_matrix(u["u_view_proj"], view_proj)
        GL.glUniform3f(u["u_eye_pos"], *(float(v) for v in eye_pos))
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA)
        weights_buffer = np.zeros(MAX_BLENDSHAPES, dtype=np.float32)
        order = sorted_back_to_front(view_proj, avatars)
        # Pass 0: every avatar's opaque fragments, writing depth; pass 1: their soft outlines
        # (the learned alpha), farthest avatar first, blended over whatever is nearer-opaque or
        # behind, without writing depth, so no soft edge hides what lies behind it.
        for render_pass in (0, 1):
            GL.glDepthMask(GL.GL_TRUE if render_pass == 0 else GL.GL_FALSE)
            GL.glUniform1i(u["u_pass"], render_pass)
            for state in order:
                plan = plans.get(state.avatar.id)
                if plan is not None:  # the refined layer in place of the mesh, in the same two passes
                    self._refinement.composite(plan, render_pass, state.opacity)
                    GL.glUseProgram(self._avatar_program)
                elif render_pass == 0 or self._soft.get(state.avatar.id, True):
                    self._draw_avatar(state, weights_buffer)
            if render_pass == 0:
                # Torsos are opaque: after the heads' opaque fragments (depth rejects what a head
                # hides), before the soft outlines, which must blend over them.
                self._draw_torsos(view_proj, order)
                GL.glUseProgram(self._avatar_program)
        GL.glDepthMask(GL.GL_TRUE)
        GL.glDisable(GL.GL_BLEND)

    def _draw_avatar(self, state: AvatarDrawState, weights_buffer: np.ndarray, opacity: float | None = None) -> None:
        u = self._avatar_uniforms
        gpu = self._avatars[state.avatar.id]
        rig = self._rigs.get(state.avatar.id)
        k = rig.base_count if rig else gpu.blendshape_count
        weights_buffer[:] = 0.0
        if state.weights is not None:
            w = np.asarray(state.weights, dtype=np.float32).reshape(-1)
            if w.size != k:
                raise ValueError(f"avatar {state.avatar.id} has {k} blendshapes, got {w.size} weights")
            weights_buffer[:k] = w
        eyes = state.eyes if rig is not None else None
        GL.glUniform1i(u["u_eye_count"], 2 if eyes is not None else 0)
        if eyes is not None:
            weights_buffer[k:k + 2] = rig.lid_weights(weights_buffer[:k], eyes.closure)
            GL.glUniform2fv(u["u_eye_centre"], 2, np.stack([rig.eyes_uv[s].centre for s in ("right", "left")]))
            GL.glUniformMatrix2fv(u["u_eye_axes"], 2, GL.GL_TRUE,
                                  np.stack([rig.eyes_uv[s].axes for s in ("right", "left")]))
            GL.glUniform2fv(u["u_gaze_uv"], 2, rig.gaze_uv(eyes.gaze, eyes.closure))
            GL.glUniform1fv(u["u_closure"], 2, np.asarray(eyes.closure, np.float32))
            GL.glUniform1f(u["u_lid_skin"], LID_SKIN_SHIFT)
            GL.glUniform1f(u["u_lid_skin_below"], LID_SKIN_BELOW)
        eye_tex = self._eye_textures.get(state.avatar.id) if eyes is not None else None
        GL.glUniform1i(u["u_eye_mix"], 1 if eye_tex else 0)
        if eye_tex:
            GL.glActiveTexture(GL.GL_TEXTURE2)
            GL.glBindTexture(GL.GL_TEXTURE_2D, eye_tex)
            GL.glActiveTexture(GL.GL_TEXTURE0)
        k = gpu.blendshape_count
        _upload_matrix(u["u_model"], state.model_matrix)
        _upload_matrix(u["u_body"], state.model_matrix if state.body_matrix is None else state.body_matrix)
        GL.glUniform1i(u["u_vertex_count"], gpu.vertex_count)
        GL.glUniform1i(u["u_blend_count"], k)
        GL.glUniform1fv(u["u_weights"], MAX_BLENDSHAPES, weights_buffer)
        GL.glUniform1f(u["u_opacity"], float(state.opacity if opacity is None else opacity))
        gpu.draw()

    def _draw_torsos(self, view_proj: np.ndarray, states: Sequence[AvatarDrawState]) -> None:
        drawn = [(s, self._avatars[s.avatar.id].torso) for s in states if self._avatars[s.avatar.id].torso is not None]
        if not drawn:
            return
        u = self._torso_uniforms
        GL.glUseProgram(self._torso_program)
        _upload_matrix(u["u_view_proj"], view_proj)
        GL.glUniform1i(u["u_texture"], 0)
        for state, torso in drawn:
            _upload_matrix(u["u_body"], state.model_matrix if state.body_matrix is None else state.body_matrix)
            GL.glUniform1f(u["u_opacity"], float(state.opacity))
            torso.draw()

    # ------------------------------------------------------------------------------ teardown

    def close(self) -> None:
        """Delete every GL object; the context must still be current."""
        for gpu in self._avatars.values():
            gpu.delete()
        self._avatars.clear()
        if self._refinement is not None:
            self._refinement.close()
            self._refinement = None
        if self._eye_textures:
            GL.glDeleteTextures(list(self._eye_textures.values()))
            self._eye_textures.clear()
        GL.glDeleteBuffers(len(self._room_buffers), self._room_buffers)
        GL.glDeleteVertexArrays(2, [self._room_vao, self._empty_vao])
        for program in (self._sky_program, self._scene_program, self._avatar_program, self._torso_program):
            GL.glDeleteProgram(program)
        self._room_buffers = []


def sorted_back_to_front(view_proj: np.ndarray, avatars: Sequence[AvatarDrawState]) -> list[AvatarDrawState]:
    """Avatars farthest first (clip-space w of each model origin), so a soft-edged head (whole-head
    avatars: hair outline, the refinement's matte) blends over the ones behind it in any scene order."""
    def depth(state: AvatarDrawState) -> float:
        origin = np.asarray(view_proj, np.float64) @ (np.asarray(state.model_matrix, np.float64) @ [0.0, 0.0, 0.0, 1.0])
        return float(origin[3])
    return sorted(avatars, key=depth, reverse=True)


def upload_room_mesh(vertices: np.ndarray, indices: np.ndarray) -> tuple[int, list[int], int]:
    """A static room-shader mesh (FLOATS_PER_VERTEX interleaved: position, normal, colour, grid
    flag; uint32 triangles) into a VAO: (vao, [vertex buffer, index buffer], index count)."""
    vao = int(GL.glGenVertexArrays(1))
    buffers = [int(b) for b in GL.glGenBuffers(2)]
    GL.glBindVertexArray(vao)
    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, buffers[0])
    GL.glBufferData(GL.GL_ARRAY_BUFFER, vertices.nbytes, vertices, GL.GL_STATIC_DRAW)
    stride = FLOATS_PER_VERTEX * 4
    for location, size, offset in ((0, 3, 0), (1, 3, 3), (2, 3, 6), (3, 1, 9)):
        GL.glEnableVertexAttribArray(location)
        raw_vertex_attrib_pointer(location, size, GL.GL_FLOAT, GL.GL_FALSE, stride, ctypes.c_void_p(offset * 4))
    GL.glBindBuffer(GL.GL_ELEMENT_ARRAY_BUFFER, buffers[1])
    GL.glBufferData(GL.GL_ELEMENT_ARRAY_BUFFER, indices.nbytes, indices, GL.GL_STATIC_DRAW)
    GL.glBindVertexArray(0)
    GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
    return vao, buffers, indices.size

