"""The default environment: a floor with a grid and a room open to the sky, as vertex arrays.

Pure numpy, no GL: one interleaved float32 array of (position xyz, normal xyz, linear colour rgb,
grid flag) per vertex, triangles as a uint32 index array. Walls face inwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FLOATS_PER_VERTEX = 10  # position 3, normal 3, colour 3, grid 1


@dataclass(frozen=True)
class RoomConfig:
    """Room size in metres, centred on the origin of the stage (floor at `floor_y`)."""

    width: float = 8.0      # along x
    depth: float = 8.0      # along z
    wall_height: float = 2.6
    floor_y: float = 0.0
    floor_color: tuple[float, float, float] = (0.30, 0.30, 0.32)   # linear RGB
    wall_color: tuple[float, float, float] = (0.55, 0.52, 0.48)
    walls: bool = True


def _quad(corners: np.ndarray, normal, color, grid: float) -> np.ndarray:
    rows = [np.concatenate([c, normal, color, [grid]]) for c in corners]
    return np.asarray(rows, dtype=np.float32)


def build_room(config: RoomConfig) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (N, FLOATS_PER_VERTEX) float32 and triangle indices (M, 3) uint32."""
    hx, hz, y0 = config.width / 2, config.depth / 2, config.floor_y
    y1 = y0 + config.wall_height
    quads = [
        _quad(np.array([[-hx, y0, -hz], [-hx, y0, hz], [hx, y0, hz], [hx, y0, -hz]]),
              (0, 1, 0), config.floor_color, 1.0),
    ]
    if config.walls:
        wc = config.wall_color
        quads += [
            _quad(np.array([[-hx, y0, -hz], [hx, y0, -hz], [hx, y1, -hz], [-hx, y1, -hz]]), (0, 0, 1), wc, 0.0),
            _quad(np.array([[hx, y0, hz], [-hx, y0, hz], [-hx, y1, hz], [hx, y1, hz]]), (0, 0, -1), wc, 0.0),
            _quad(np.array([[-hx, y0, hz], [-hx, y0, -hz], [-hx, y1, -hz], [-hx, y1, hz]]), (1, 0, 0), wc, 0.0),
            _quad(np.array([[hx, y0, -hz], [hx, y0, hz], [hx, y1, hz], [hx, y1, -hz]]), (-1, 0, 0), wc, 0.0),
        ]
    vertices = np.concatenate(quads)
    indices = np.concatenate([np.array([[0, 1, 2], [0, 2, 3]]) + 4 * i for i in range(len(quads))])
    return vertices, indices.astype(np.uint32)
