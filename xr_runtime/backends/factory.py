"""A backend by name, from one options record (what `headcast render` and `demo` ask for)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.errors import HeadcastError


@dataclass(frozen=True)
class BackendOptions:
    width: int = 640                     # desktop/headless eye size in pixels
    height: int = 480
    stereo: bool = False                 # desktop/headless: two eyes side by side
    fps: float = 60.0                    # headless pacing / video rate
    paced: bool = True                   # headless: at `fps`, or as fast as possible
    wake: str = "late"                   # headless paced: start frames just in time, or at the period start
    frame_feed: str | None = None        # headless: publish the shown frames here (bench glass without a camera)
    out: Path | None = None              # headless: *.mp4 or a directory for PNG frames
    video_codec: str = "h264"            # headless: codec of an *.mp4 out (media.video_writer; mp4v: the old one)
    mirror: bool | None = None           # openxr: a desktop mirror of the left eye (None: when a display exists)
    graphics: str = "auto"               # openxr: GL binding (auto, egl, glx, win32)
    samples: int | None = None           # openxr: MSAA samples per eye (None: automatic)
    refresh_rate: float | None = None    # openxr: refresh rate to ask for (None: the highest)
    # openxr: publish the wearer's face (headset face tracking, expr52) as this stream to this endpoint
    face_stream: str | None = None
    face_connect: str | None = None
    face_curve: object | None = None     # streaming.sockets.CurveClient for face_connect (a room needs one)
    face_clock: str | None = None        # the receiving side's clock service, pinged as face_stream


def make_backend(name: str, options: BackendOptions, viewer):
    """`name`: openxr, desktop or headless; `viewer`: the scene's viewer start pose."""
    o = options
    if o.face_stream and name != "openxr":
        raise HeadcastError(f"the wearer's face comes from a headset's face tracking: it needs the openxr backend, "
                            f"not {name}")
    if name == "headless":
        from media.video_writer import VideoConfig
        from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig

        return HeadlessBackend(HeadlessConfig(width=o.width, height=o.height, stereo=o.stereo, fps=o.fps,
                                              paced=o.paced, wake=o.wake, out=o.out,
                                              video=VideoConfig(codec=o.video_codec), frame_feed=o.frame_feed,
                                              head_position=tuple(viewer.position),
                                              head_rotation=tuple(viewer.rotation)))
    if o.out is not None:
        raise HeadcastError("an output file is for the headless backend")
    if name == "desktop":
        from xr_runtime.backends.desktop import DesktopBackend, DesktopConfig

        return DesktopBackend(DesktopConfig(width=o.width * (2 if o.stereo else 1), height=o.height, stereo=o.stereo,
                                            head_position=tuple(viewer.position),
                                            head_rotation=tuple(viewer.rotation)))
    if name != "openxr":
        raise HeadcastError(f"unknown backend {name!r}")
    from xr_runtime.backends.openxr import OpenXRBackend
    from xr_runtime.openxr.session import XrSessionConfig

    if o.samples is not None and o.samples < 0:
        raise HeadcastError("MSAA samples must be 0 or more")
    if o.refresh_rate is not None and o.refresh_rate <= 0:
        raise HeadcastError("the refresh rate must be positive")
    backend = OpenXRBackend(XrSessionConfig(graphics=o.graphics, samples=o.samples, refresh_rate=o.refresh_rate),
                            mirror=o.mirror)
    if o.face_stream:
        from xr_runtime.openxr.face_tracking import WearerFaceTarget

        backend.face_stream = WearerFaceTarget(o.face_connect, o.face_stream, o.face_curve, o.face_clock)
    return backend
