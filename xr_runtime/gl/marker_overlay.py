"""Draws the optical frame counter (`media.optical_marker`) into the bound framebuffer.

One scissored clear per cell (8×8 cells): no shader, no texture, nothing to upload — a few
microseconds on any GL, and exactly black and white whatever the framebuffer's sRGB setting
(0 and 1 encode to themselves).
"""
from __future__ import annotations

from OpenGL import GL

from media.optical_marker import marker_cells


def draw_marker(frame_index: int, width: int, height: int, cell_px: int = 8, margin_px: int = 8) -> None:
    """The marker for `frame_index` in the bottom-right corner of a `width`×`height` target."""
    cells = marker_cells(frame_index)
    side = cells.shape[0]
    cell_px = max(2, min(cell_px, (min(width, height) - 2 * margin_px) // side))
    x0 = width - margin_px - side * cell_px
    y0 = margin_px                                   # GL's origin is the bottom-left corner
    was_scissor = GL.glIsEnabled(GL.GL_SCISSOR_TEST)
    GL.glEnable(GL.GL_SCISSOR_TEST)
    for white in (True, False):
        GL.glClearColor(*((1.0, 1.0, 1.0, 1.0) if white else (0.0, 0.0, 0.0, 1.0)))
        for row in range(side):
            for col in range(side):
                if cells[row, col] == white:
                    # Row 0 is the marker's top row: the highest cell row on screen.
                    GL.glScissor(x0 + col * cell_px, y0 + (side - 1 - row) * cell_px, cell_px, cell_px)
                    GL.glClear(GL.GL_COLOR_BUFFER_BIT)
    if not was_scissor:
        GL.glDisable(GL.GL_SCISSOR_TEST)
