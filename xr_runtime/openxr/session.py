"""An OpenXR session with an OpenGL binding (EGL without a display, GLX with one, WGL on Windows)
and its frame loop.

    with OpenXRSession(XrSessionConfig()) as xr_session:      # instance, session, swapchains
        renderer = Renderer()                                   # GL context is current here
        stats = xr_session.run(draw_eye, max_frames=100)       # draw_eye(frame, eye) per view
        renderer.close()
    # leaving the block: xrRequestExitSession → STOPPING → xrEndSession → EXITING → destroy

Lifecycle: IDLE → READY (xrBeginSession) → SYNCHRONIZED / VISIBLE / FOCUSED (frames) → STOPPING
(xrEndSession) → IDLE → EXITING (done). LOSS_PENDING and XR_ERROR_INSTANCE_LOST /
XR_ERROR_SESSION_LOST end the loop with `stats.lost = True`; the caller may build a new session.
`run` returns on `max_frames`, on a `stop` event (Ctrl-C handlers set it), or at EXITING/loss.

Frame: xrWaitFrame → xrBeginFrame → (while FOCUSED) sync controller actions → `on_frame(info)`
with the predicted display time (XrTime and, via XR_KHR_convert_timespec_time, CLOCK_MONOTONIC
ns) → (if shouldRender) locate views in the chosen reference space, acquire each eye's swapchain
images, call `draw_eye`, release → xrEndFrame with one projection layer (two views) and, when
XR_KHR_composition_layer_depth is enabled, depth info per view. A callback that raises still gets
its frame ended (no layers) and its images released before the error propagates.

Graphics: `XrSessionConfig.graphics` picks the binding (openxr_graphics: "auto" = EGL without an X
display, GLX with one, WGL on Windows); the instance enables only the extensions that binding
needs. Eye framebuffers are multisampled by default where that is cheap (msaa) and resolved into
the swapchain images. With XR_FB_display_refresh_rate the highest offered refresh rate (or the
configured one) is requested (openxr_refresh_rate).

Ctrl-C: wrap `run` in `interrupts.stop_event_on_signals()` and pass the event as `stop`.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Literal, Protocol

from geometry import transforms
from xr_runtime.gl.context_config import GLContextConfig
from xr_runtime.gl.eye_view import EyeView
from xr_runtime.gl.glfw_context import GlfwContextConfig
from xr_runtime.gl.msaa import choose_samples
from xr_runtime.gl.platform import import_xr
from xr_runtime.openxr import refresh_rate as openxr_refresh_rate
from xr_runtime.openxr.bindings import create_graphics
from xr_runtime.openxr.clock import CONVERT_TIMESPEC_EXTENSION, XrClock
from xr_runtime.openxr.errors import XrUnavailableError
from xr_runtime.openxr.graphics import (
    EGL_EXTENSION,
    GraphicsChoice,
    GraphicsRequest,
    choose_graphics,
    required_extensions,
)
from xr_runtime.openxr.input import ControllerInput
from xr_runtime.openxr.refresh_rate import RefreshRate
from xr_runtime.openxr.swapchain import COLOR_PREFERENCE, DEPTH_PREFERENCE, EyeSwapchain, pick_format
from xr_runtime.scene.hand import HandState

xr = import_xr()  # keeps PyOpenGL's EGL platform in place (see gl_platform)

log = logging.getLogger(__name__)

DEPTH_EXTENSION = "XR_KHR_composition_layer_depth"
REFRESH_RATE_EXTENSION = openxr_refresh_rate.EXTENSION
OPTIONAL_EXTENSIONS = (CONVERT_TIMESPEC_EXTENSION, DEPTH_EXTENSION, REFRESH_RATE_EXTENSION)


@dataclass(frozen=True)
class XrSessionConfig:
    app_name: str = "headcast"
    reference_space: Literal["stage", "local"] = "stage"  # STAGE falls back to LOCAL if absent
    near: float = 0.05
    far: float = 100.0
    depth_layer: bool = True          # submit depth when the runtime offers the extension
    # MSAA samples for the eye framebuffers: None = automatic (msaa.choose_samples: 4 on a GPU,
    # off on a software rasteriser), 0 = off; always clamped to GL_MAX_SAMPLES.
    samples: int | None = None
    api_layers: tuple[str, ...] = ()  # e.g. ("XR_APILAYER_LUNARG_core_validation",)
    graphics: GraphicsRequest = "auto"  # "egl" | "glx" | "win32" | "auto" (openxr_graphics)
    gl: GLContextConfig = field(default_factory=GLContextConfig)          # the EGL binding's context
    window: GlfwContextConfig = field(default_factory=GlfwContextConfig)  # GLX/WGL: hidden GLFW window
    # Hz to ask for with XR_FB_display_refresh_rate; None = the highest the runtime offers.
    refresh_rate: float | None = None
    idle_poll_s: float = 0.02         # sleep between event polls while not running
    controllers: bool = True          # action set with grip pose + squeeze per hand
    # The wearer's face (openxr/face_tracking.py) when the runtime offers FB/HTC/Android face tracking.
    face_tracking: bool = True


@dataclass(frozen=True)
class FrameInfo:
    index: int                           # frames begun in this session
    predicted_display_time: int          # XrTime
    predicted_display_period_ns: int
    display_time_monotonic_ns: int | None  # same instant on time.monotonic_ns()'s clock, if known
    should_render: bool
    # Hands at the predicted display time, in the session's reference space (FOCUSED only;
    # empty when controllers are off or the session is not focused).
    hands: dict[str, HandState] = field(default_factory=dict)
    # The wearer's face at the predicted display time: an expr52 payload (52, 2), or None.
    face: object = None


class DrawEye(Protocol):
    def __call__(self, frame: FrameInfo, eye: EyeView) -> None: ...


@dataclass
class RunStats:
    frames_waited: int = 0
    frames_rendered: int = 0     # frames submitted with a projection layer
    views_rendered: int = 0
    states: list[str] = field(default_factory=list)  # every session state seen, in order
    lost: bool = False
    exited: bool = False         # reached EXITING
    reason: str = ""


def _max_gl_samples() -> int:
    from OpenGL import GL

    try:
        return int(GL.glGetIntegerv(GL.GL_MAX_SAMPLES))
    except GL.GLError:  # a GL without multisample renderbuffers
        return 0


class OpenXRSession:
    """Owns the GL context (per binding), the OpenXR instance, session, spaces and swapchains."""

    def __init__(self, config: XrSessionConfig | None = None) -> None:
        self.config = config or XrSessionConfig()
        self.instance = self.session = None
        self.spaces: dict[str, object] = {}
        self.swapchains: list[EyeSwapchain] = []
        self.input: ControllerInput | None = None
        self.face_extension: str | None = None
        self.face_tracker = None          # openxr/face_tracking.FaceTracker when the runtime offers one
        self.state = xr.SessionState.UNKNOWN
        self.running = False
        self.lost = False
        self._exit_requested = False
        self._frame_index = 0
        self.graphics = None              # EglGraphics | GlxGraphics | Win32Graphics
        self.refresh_rate: RefreshRate | None = None
        self.stats = RunStats()
        try:
            self._create()
        except xr.ResultException as exc:  # the loader or runtime refused a set-up call: say which
            self.close()
            layers = os.environ.get("XR_ENABLE_API_LAYERS")
            hint = f" (XR_ENABLE_API_LAYERS={layers})" if layers and "LAYER" in type(exc).__name__.upper() else ""
            raise XrUnavailableError(f"OpenXR set-up failed: {type(exc).__name__}: {exc}{hint}") from exc
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------------------ set-up

    def _create(self) -> None:
        offered = {e.extension_name.decode() for e in xr.enumerate_instance_extension_properties()}
        self.graphics_choice = choose_graphics(self.config.graphics, offered)
        # The GL context comes first (it needs no instance): if "auto" chose GLX and the X server
        # cannot give a context (a stale DISPLAY), EGL can still be chosen before the instance
        # fixes the extension list.
        self.graphics = self._create_graphics(offered)
        wanted = list(required_extensions(self.graphics_choice.kind))
        wanted += [name for name in OPTIONAL_EXTENSIONS if name in offered
                   and (name != DEPTH_EXTENSION or self.config.depth_layer)]
        from .face_tracking import choose_extension

        self.face_extension = choose_extension(offered, self.config.face_tracking)
        if self.face_extension:
            wanted.append(self.face_extension)
        self.extensions = frozenset(wanted)
        layers = [layer.layer_name.decode() for layer in xr.enumerate_api_layer_properties()]
        for layer in self.config.api_layers:
            if layer not in layers:
                raise XrUnavailableError(f"API layer {layer} not available (have {layers})")
        self.instance = xr.create_instance(xr.InstanceCreateInfo(
            application_info=xr.ApplicationInfo(
                application_name=self.config.app_name, application_version=1,
                engine_name="headcast", engine_version=1, api_version=xr.Version(1, 0, 0)),
            enabled_api_layer_names=list(self.config.api_layers),
            enabled_extension_names=wanted,
        ))
        props = xr.get_instance_properties(self.instance)
        self.runtime_name = props.runtime_name.decode()
        self.runtime_version = str(xr.Version(props.runtime_version))
        log.info("OpenXR runtime %s %s; %s binding (%s); extensions %s", self.runtime_name,
                 self.runtime_version, self.graphics_choice.kind, self.graphics_choice.reason, ", ".join(wanted))
        self.clock = XrClock(xr, self.instance, CONVERT_TIMESPEC_EXTENSION in self.extensions)
        self.system_id = xr.get_system(self.instance, xr.SystemGetInfo(
            form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        self.view_configuration = xr.ViewConfigurationType.PRIMARY_STEREO
        view_configs = xr.enumerate_view_configuration_views(
            self.instance, self.system_id, self.view_configuration)
        # The spec requires this call before xrCreateSession; Monado enforces it.
        requirements = xr.get_opengl_graphics_requirements_khr(self.instance, self.system_id)
        log.debug("OpenGL requirements: %s", requirements)

        self.session = xr.create_session(self.instance, xr.SessionCreateInfo(
            system_id=self.system_id, next=self.graphics.pointer()))
        if REFRESH_RATE_EXTENSION in self.extensions:
            self.refresh_rate = RefreshRate(xr, self.session, self.config.refresh_rate)

        available = set(xr.enumerate_reference_spaces(self.session))
        for name, kind in (("local", xr.ReferenceSpaceType.LOCAL), ("stage", xr.ReferenceSpaceType.STAGE)):
            if kind in available:
                self.spaces[name] = xr.create_reference_space(self.session, xr.ReferenceSpaceCreateInfo(
                    reference_space_type=kind, pose_in_reference_space=xr.Posef()))
        self.space_name = self.config.reference_space if self.config.reference_space in self.spaces else "local"
        if self.space_name != self.config.reference_space:
            log.warning("%s reference space not offered; using local", self.config.reference_space)
        self.space = self.spaces[self.space_name]

        if self.face_extension:
            from .face_tracking import FaceTracker

            try:
                self.face_tracker = FaceTracker(xr, self.instance, self.session, self.face_extension)
                log.info("face tracking through %s", self.face_extension)
            except (xr.ResultException, ValueError, KeyError) as exc:  # offered, but no tracker (permission, device)
                log.warning("%s offered but no face tracker: %s", self.face_extension, exc)

        if self.config.controllers:
            self.input = ControllerInput(xr, self.instance, self.session)
            log.info("controller bindings suggested for %d profiles", len(self.input.profiles))

        formats = [int(f) for f in xr.enumerate_swapchain_formats(self.session)]
        color_format = pick_format(formats, COLOR_PREFERENCE)
        if color_format is None:
            raise XrUnavailableError(f"no RGBA8/sRGB swapchain format among {[hex(f) for f in formats]}")
        if color_format != COLOR_PREFERENCE[0]:
            log.warning("runtime offers no sRGB swapchain format; colours will be too dark")
        depth_format = pick_format(formats, DEPTH_PREFERENCE) if DEPTH_EXTENSION in self.extensions else None
        self.depth_enabled = depth_format is not None
        self.msaa = choose_samples(self.config.samples, self.graphics.renderer, _max_gl_samples())
        for view_config in view_configs:
            self.swapchains.append(EyeSwapchain(
                xr, self.session, view_config.recommended_image_rect_width,
                view_config.recommended_image_rect_height, color_format, depth_format,
                samples=self.msaa.samples))
        log.info("%d views of %dx%d, colour 0x%x, depth %s, MSAA %d (%s), %s space", len(self.swapchains),
                 self.swapchains[0].width, self.swapchains[0].height, color_format,
                 hex(depth_format) if depth_format else "off", self.msaa.samples, self.msaa.reason,
                 self.space_name)

    def _create_graphics(self, offered: set[str]):
        from xr_runtime.gl.glfw_context import GlfwContextError
        from xr_runtime.gl.native_handles import NativeHandleError

        choice = self.graphics_choice
        try:
            return create_graphics(choice.kind, xr, self.config.gl, self.config.window)
        except (GlfwContextError, NativeHandleError) as exc:
            if not (self.config.graphics == "auto" and choice.kind == "glx" and EGL_EXTENSION in offered):
                raise XrUnavailableError(f"no {choice.kind} context for OpenXR: {exc}") from exc
            log.warning("GLX context unavailable (%s); using the EGL binding instead", exc)
            self.graphics_choice = GraphicsChoice("egl", f"GLX failed ({exc}); the runtime offers {EGL_EXTENSION}")
            return create_graphics("egl", xr, self.config.gl, self.config.window)

    # ------------------------------------------------------------------------------ events

    def _set_state(self, state) -> None:
        self.state = state
        self.stats.states.append(state.name)
        log.info("session state %s", state.name)
        if state == xr.SessionState.READY:
            xr.begin_session(self.session, xr.SessionBeginInfo(
                primary_view_configuration_type=self.view_configuration))
            self.running = True
        elif state == xr.SessionState.STOPPING:
            xr.end_session(self.session)
            self.running = False
        elif state == xr.SessionState.EXITING:
            self.stats.exited = True
        elif state == xr.SessionState.LOSS_PENDING:
            self._mark_lost("session loss pending")

    def _mark_lost(self, reason: str) -> None:
        self.lost = self.stats.lost = True
        self.running = False
        self.stats.reason = reason
        log.warning("OpenXR %s", reason)

    def poll_events(self) -> None:
        while True:
            try:
                event = xr.poll_event(self.instance)
            except xr.EventUnavailable:
                return
            kind = xr.StructureType(event.type)
            if kind == xr.StructureType.EVENT_DATA_SESSION_STATE_CHANGED:
                changed = ctypes.cast(ctypes.byref(event), ctypes.POINTER(xr.EventDataSessionStateChanged)).contents
                self._set_state(xr.SessionState(changed.state))
            elif kind == xr.StructureType.EVENT_DATA_INSTANCE_LOSS_PENDING:
                self._mark_lost("instance loss pending")
            elif kind == xr.StructureType.EVENT_DATA_REFERENCE_SPACE_CHANGE_PENDING:
                log.info("reference space change pending")
            elif kind == xr.StructureType.EVENT_DATA_DISPLAY_REFRESH_RATE_CHANGED_FB:
                changed = ctypes.cast(ctypes.byref(event),
                                      ctypes.POINTER(xr.EventDataDisplayRefreshRateChangedFB)).contents
                if self.refresh_rate is not None:
                    self.refresh_rate.on_changed(changed)
            else:
                log.debug("OpenXR event %s", kind.name)

    def request_exit(self) -> None:
        """Ask the runtime to stop the session (it answers with STOPPING, then EXITING)."""
        if self._exit_requested or self.lost or self.session is None:
            return
        self._exit_requested = True
        if self.running:
            xr.request_exit_session(self.session)
        else:
            # Not begun (or already ended): nothing to stop, leave directly.
            self.stats.exited = True

    # ------------------------------------------------------------------------------ frames

    def run(self, draw_eye: DrawEye | None, *, max_frames: int | None = None,
            stop: threading.Event | None = None, timeout_s: float | None = None,
            on_frame: Callable[[FrameInfo], None] | None = None) -> RunStats:
        """Pump events and frames until max_frames rendered, `stop`, EXITING, loss or timeout.

        `max_frames` counts frames *rendered* (submitted with a projection layer) in this call.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        rendered_before = self.stats.frames_rendered
        try:
            while not (self.stats.exited or self.lost):
                self.poll_events()
                if self.stats.exited or self.lost:
                    break
                if stop is not None and stop.is_set():
                    self.stats.reason = self.stats.reason or "stop requested"
                    break
                if max_frames is not None and self.stats.frames_rendered - rendered_before >= max_frames:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    self.stats.reason = "timeout"
                    break
                if not self.running:
                    time.sleep(self.config.idle_poll_s)
                    continue
                self._frame(draw_eye, on_frame)
        except (xr.InstanceLostError, xr.SessionLostError) as error:
            self._mark_lost(type(error).__name__)
        except xr.SessionLossPending:
            self._mark_lost("session loss pending")
        return self.stats

    def _frame(self, draw_eye: DrawEye | None, on_frame: Callable[[FrameInfo], None] | None) -> None:
        frame_state = xr.wait_frame(self.session, xr.FrameWaitInfo())
        try:
            xr.begin_frame(self.session, xr.FrameBeginInfo())
        except xr.FrameDiscarded:
            # A success code (pyopenxr raises it): the previous frame never reached xrEndFrame.
            log.debug("previous frame discarded")
        self.stats.frames_waited += 1
        self._frame_index += 1
        display_time = int(frame_state.predicted_display_time)
        hands = {}
        if self.input is not None and self.state == xr.SessionState.FOCUSED:
            hands = self.input.sample(self.space, display_time)
        face = None
        if self.face_tracker is not None:
            try:
                face = self.face_tracker.sample(display_time)
            except xr.ResultException as error:
                log.debug("face tracking: %s", error)
        info = FrameInfo(self._frame_index, display_time, int(frame_state.predicted_display_period),
                         self.clock.to_monotonic_ns(display_time), bool(frame_state.should_render),
                         hands, face)
        if on_frame is not None:
            on_frame(info)
        layers, keep_alive = [], []
        try:
            if info.should_render and draw_eye is not None:
                layer = self._render_views(info, draw_eye, keep_alive)
                if layer is not None:
                    layers.append(ctypes.byref(layer))
                    keep_alive.append(layer)
        except BaseException:
            # A failing callback (or Ctrl-C) still closes the frame, without layers, so the
            # runtime's frame pacing and the session stay usable.
            try:
                self._end_frame(display_time, [])
            except xr.ResultException as error:   # keep the original error, not this one
                log.warning("xrEndFrame after a failed frame: %s", error)
            raise
        self._end_frame(display_time, layers)
        if layers:
            self.stats.frames_rendered += 1

    def _end_frame(self, display_time: int, layers: list) -> None:
        xr.end_frame(self.session, xr.FrameEndInfo(
            display_time=display_time,
            environment_blend_mode=xr.EnvironmentBlendMode.OPAQUE,
            layers=layers))

    def _render_views(self, info: FrameInfo, draw_eye: DrawEye, keep_alive: list):
        view_state, views = xr.locate_views(self.session, xr.ViewLocateInfo(
            view_configuration_type=self.view_configuration,
            display_time=info.predicted_display_time, space=self.space))
        flags = view_state.view_state_flags
        if not (flags & xr.ViewStateFlags.POSITION_VALID_BIT and flags & xr.ViewStateFlags.ORIENTATION_VALID_BIT):
            return None  # no tracking: submit no layer this frame
        projection_views = (xr.CompositionLayerProjectionView * len(views))()
        for index, (view, swapchain) in enumerate(zip(views, self.swapchains)):
            position = (view.pose.position.x, view.pose.position.y, view.pose.position.z)
            orientation = (view.pose.orientation.x, view.pose.orientation.y,
                           view.pose.orientation.z, view.pose.orientation.w)
            fov = (view.fov.angle_left, view.fov.angle_right, view.fov.angle_up, view.fov.angle_down)
            target = swapchain.acquire()
            try:
                draw_eye(info, EyeView(
                    index=index, position=position, orientation=orientation, fov=fov,
                    view=transforms.view_matrix(position, orientation),
                    projection=transforms.projection_from_fov(*fov, self.config.near, self.config.far),
                    target=target))
            finally:
                swapchain.release()
            self.stats.views_rendered += 1
            out = projection_views[index]
            out.type = xr.StructureType.COMPOSITION_LAYER_PROJECTION_VIEW
            out.pose, out.fov = view.pose, view.fov
            out.sub_image = swapchain.sub_image()
            if self.depth_enabled:
                depth = xr.CompositionLayerDepthInfoKHR(
                    sub_image=swapchain.sub_image(depth=True), min_depth=0.0, max_depth=1.0,
                    near_z=self.config.near, far_z=self.config.far)
                keep_alive.append(depth)
                out.next = ctypes.cast(ctypes.pointer(depth), ctypes.c_void_p)
        keep_alive.append(projection_views)
        return xr.CompositionLayerProjection(space=self.space, views=projection_views)

    # ------------------------------------------------------------------------------ teardown

    @property
    def graphics_kind(self) -> str:
        return self.graphics.kind if self.graphics is not None else ""

    def make_current(self) -> None:
        if self.graphics is not None:
            self.graphics.make_current()

    def shutdown(self, timeout_s: float = 3.0) -> RunStats:
        """Request exit and keep the loop going (empty frames) until EXITING, loss or timeout."""
        if self.session is not None and not (self.lost or self.stats.exited):
            try:
                self.request_exit()
                self.run(None, timeout_s=timeout_s)
            except xr.ResultException as error:
                log.warning("during shutdown: %s", error)
        return self.stats

    def close(self) -> None:
        """Destroy everything, in reverse order of creation. Safe after loss and to call twice."""
        if self.session is not None:
            self.shutdown()
        gl_alive = self.graphics is not None
        if gl_alive:
            self.graphics.make_current()
        for swapchain in self.swapchains:
            swapchain.destroy(gl_alive)
        self.swapchains = []
        if self.input is not None:
            self.input.destroy()
            self.input = None
        if self.face_tracker is not None:
            self.face_tracker.destroy()
            self.face_tracker = None
        for handle, destroy in ([(s, xr.destroy_space) for s in self.spaces.values()]
                                + [(self.session, xr.destroy_session), (self.instance, xr.destroy_instance)]):
            if handle is None:
                continue
            try:
                destroy(handle)
            except xr.ResultException as error:
                log.debug("%s: %s", destroy.__name__, error)
        self.spaces, self.session, self.instance = {}, None, None
        if self.graphics is not None:
            self.graphics.close()
            self.graphics = None

    def __enter__(self) -> "OpenXRSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
