"""How many MSAA samples the OpenXR eye framebuffers get when the user did not say.

Multisampling smooths the avatar's silhouette and the room's edges, which shimmer in a headset
without it; 4× is the usual VR default on GPUs, which resolve in hardware (its cost on a GPU is
not measured here yet: no GPU machine was lent). On a software rasteriser it is expensive: on
Mesa llvmpipe (2 cores) 4× MSAA made the stereo frame 2.2–5× slower (docs/BENCHMARKS.md, "MSAA
on the eye framebuffers"), so there the automatic choice is off. An explicit count is honoured
up to GL_MAX_SAMPLES.
"""
from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SAMPLES = 4
# GL_RENDERER substrings of rasterisers that run on the CPU.
SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader", "microsoft basic render", "lavapipe")


@dataclass(frozen=True)
class SampleChoice:
    samples: int          # 0 = no multisampling
    reason: str


def is_software_renderer(renderer: str) -> bool:
    name = renderer.lower()
    return any(s in name for s in SOFTWARE_RENDERERS)


def choose_samples(requested: int | None, renderer: str, max_samples: int) -> SampleChoice:
    """`requested` None = automatic; `max_samples` is the context's GL_MAX_SAMPLES (< 2: none)."""
    if requested is not None and requested < 0:
        raise ValueError(f"samples must be >= 0 or None, got {requested}")
    if requested is None:
        if is_software_renderer(renderer):
            return SampleChoice(0, f"automatic: off on the software rasteriser {renderer!r}")
        wanted, why = DEFAULT_SAMPLES, "automatic"
    else:
        wanted, why = requested, "requested"
    if wanted < 2:
        return SampleChoice(0, f"{why}: off")
    if max_samples < 2:
        return SampleChoice(0, f"{why} {wanted}, but GL_MAX_SAMPLES is {max_samples}: off")
    if wanted > max_samples:
        return SampleChoice(max_samples, f"{why} {wanted}, clamped to GL_MAX_SAMPLES {max_samples}")
    return SampleChoice(wanted, why)
