"""A status overlay drawn in window pixels: text from a bitmap font atlas made with cv2.putText.

The atlas holds printable ASCII (32–126) in fixed cells, plus one solid cell for the background
panel, in a GL_R8 texture used as coverage. Per frame the lines become one vertex array (two
triangles per glyph), one buffer upload and one draw call.
"""
from __future__ import annotations

import ctypes

import numpy as np
from OpenGL import GL
from OpenGL.raw.GL.VERSION.GL_2_0 import glVertexAttribPointer as raw_vertex_attrib_pointer

FIRST, LAST = 32, 126
CELL_W, CELL_H = 9, 15
COLUMNS = 16

def build_atlas() -> np.ndarray:
    """(rows·CELL_H, COLUMNS·CELL_W) uint8 coverage; the last cell is solid (for panels)."""
    import cv2

    count = LAST - FIRST + 2
    rows = (count + COLUMNS - 1) // COLUMNS
    atlas = np.zeros((rows * CELL_H, COLUMNS * CELL_W), np.uint8)
    for i, code in enumerate(range(FIRST, LAST + 1)):
        r, c = divmod(i, COLUMNS)
        cell = np.zeros((CELL_H, CELL_W), np.uint8)
        cv2.putText(cell, chr(code), (0, CELL_H - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, 255, 1, cv2.LINE_AA)
        atlas[r * CELL_H:(r + 1) * CELL_H, c * CELL_W:(c + 1) * CELL_W] = cell
    r, c = divmod(count - 1, COLUMNS)
    atlas[r * CELL_H + 2:(r + 1) * CELL_H - 2, c * CELL_W + 2:(c + 1) * CELL_W - 2] = 255
    return atlas


def _cell_uv(index: int, shape) -> tuple[float, float, float, float]:
    r, c = divmod(index, COLUMNS)
    h, w = shape
    return c * CELL_W / w, r * CELL_H / h, (c + 1) * CELL_W / w, (r + 1) * CELL_H / h


def layout(lines: list[str], origin=(8, 8), atlas_shape=None) -> np.ndarray:
    """(N, 4) float32 vertices (pixel x, y, u, v): a panel behind the text, then the glyphs."""
    shape = atlas_shape
    solid = _cell_uv(LAST - FIRST + 1, shape)
    # Sample the solid cell's centre only, so filtering never reaches its transparent border.
    su, sv = (solid[0] + solid[2]) / 2, (solid[1] + solid[3]) / 2
    width = max((len(line) for line in lines), default=0) * CELL_W + 8
    height = len(lines) * CELL_H + 8
    x0, y0 = origin[0] - 4, origin[1] - 4
    quads = [(x0, y0, x0 + width, y0 + height, su, sv, su, sv)]
    for row, line in enumerate(lines):
        for col, ch in enumerate(line):
            code = ord(ch)
            if code == 32 or not FIRST <= code <= LAST:
                continue
            u0, v0, u1, v1 = _cell_uv(code - FIRST, shape)
            x, y = origin[0] + col * CELL_W, origin[1] + row * CELL_H
            quads.append((x, y, x + CELL_W, y + CELL_H, u0, v0, u1, v1))
    out = np.empty((len(quads) * 6, 4), np.float32)
    for i, (xa, ya, xb, yb, ua, va, ub, vb) in enumerate(quads):
        out[i * 6:(i + 1) * 6] = [(xa, ya, ua, va), (xb, ya, ub, va), (xb, yb, ub, vb),
                                  (xa, ya, ua, va), (xb, yb, ub, vb), (xa, yb, ua, vb)]
    return out


class TextOverlay:
    """Create with a current GL context; `draw(lines, width, height)` into the bound framebuffer."""

    def __init__(self) -> None:
        from xr_runtime.gl.shaders import build_program

        self.program = build_program("overlay.vert", "overlay.frag")
        self.atlas = build_atlas()
        self.texture = int(GL.glGenTextures(1))
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 1)
        GL.glTexImage2D(GL.GL_TEXTURE_2D, 0, GL.GL_R8, self.atlas.shape[1], self.atlas.shape[0], 0,
                        GL.GL_RED, GL.GL_UNSIGNED_BYTE, np.ascontiguousarray(self.atlas))
        GL.glPixelStorei(GL.GL_UNPACK_ALIGNMENT, 4)
        for name, value in ((GL.GL_TEXTURE_MIN_FILTER, GL.GL_NEAREST), (GL.GL_TEXTURE_MAG_FILTER, GL.GL_NEAREST),
                            (GL.GL_TEXTURE_WRAP_S, GL.GL_CLAMP_TO_EDGE), (GL.GL_TEXTURE_WRAP_T, GL.GL_CLAMP_TO_EDGE)):
            GL.glTexParameteri(GL.GL_TEXTURE_2D, name, value)
        GL.glBindTexture(GL.GL_TEXTURE_2D, 0)
        self.vao = int(GL.glGenVertexArrays(1))
        self.vbo = int(GL.glGenBuffers(1))
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
        for location, offset in ((0, 0), (1, 8)):
            GL.glEnableVertexAttribArray(location)
            raw_vertex_attrib_pointer(location, 2, GL.GL_FLOAT, GL.GL_FALSE, 16, ctypes.c_void_p(offset))
        GL.glBindVertexArray(0)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        self.u_viewport = GL.glGetUniformLocation(self.program, "u_viewport")
        self.u_color = GL.glGetUniformLocation(self.program, "u_color")
        GL.glUseProgram(self.program)
        GL.glUniform1i(GL.glGetUniformLocation(self.program, "u_atlas"), 0)
        GL.glUseProgram(0)

    def draw(self, lines: list[str], width: int, height: int) -> None:
        if not lines:
            return
        vertices = layout(lines, atlas_shape=self.atlas.shape)
        GL.glViewport(0, 0, width, height)
        GL.glDisable(GL.GL_DEPTH_TEST)
        GL.glDisable(GL.GL_FRAMEBUFFER_SRGB)
        GL.glEnable(GL.GL_BLEND)
        GL.glBlendFunc(GL.GL_SRC_ALPHA, GL.GL_ONE_MINUS_SRC_ALPHA)
        GL.glUseProgram(self.program)
        GL.glUniform2f(self.u_viewport, float(width), float(height))
        GL.glActiveTexture(GL.GL_TEXTURE0)
        GL.glBindTexture(GL.GL_TEXTURE_2D, self.texture)
        GL.glBindVertexArray(self.vao)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, self.vbo)
        GL.glBufferData(GL.GL_ARRAY_BUFFER, vertices.nbytes, vertices, GL.GL_STREAM_DRAW)
        GL.glUniform4f(self.u_color, 0.0, 0.0, 0.0, 0.6)
        GL.glDrawArrays(GL.GL_TRIANGLES, 0, 6)                      # the panel
        GL.glUniform4f(self.u_color, 1.0, 1.0, 1.0, 1.0)
        GL.glDrawArrays(GL.GL_TRIANGLES, 6, len(vertices) - 6)      # the glyphs
        GL.glBindVertexArray(0)
        GL.glBindBuffer(GL.GL_ARRAY_BUFFER, 0)
        GL.glUseProgram(0)
        GL.glDisable(GL.GL_BLEND)

    def close(self) -> None:
        GL.glDeleteTextures([self.texture])
        GL.glDeleteBuffers(1, [self.vbo])
        GL.glDeleteVertexArrays(1, [self.vao])
        GL.glDeleteProgram(self.program)
