"""What headless EGL context to create (`gl_context.HeadlessGLContext`). Apart from gl_context so
that configs (OpenXR's, the headless backend's) can be built where PyOpenGL has no EGL platform
(Windows), without importing OpenGL.EGL."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DisplayKind = Literal["surfaceless", "device", "default"]


@dataclass(frozen=True)
class GLContextConfig:
    """What context to create. Versions are tried from (major, minor) down to 3.3."""

    display: DisplayKind = "surfaceless"
    major: int = 4
    minor: int = 5
    debug: bool = False
    # device platform only: index into eglQueryDevicesEXT, or None = first usable device
    device_index: int | None = None
    # device platform only: prefer the EGL device whose EGL_CUDA_DEVICE_NV equals this
    cuda_device: int | None = None
