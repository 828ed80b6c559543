"""Decisions the OpenXR backend makes before it touches a runtime: which GL binding (and so which
instance extensions), how many MSAA samples, which display refresh rate. Pure logic; the sessions
that act on them run against Monado in test_openxr_session.py / test_openxr_glx.py."""
from __future__ import annotations

import pytest

from xr_runtime.gl.msaa import choose_samples, is_software_renderer
from xr_runtime.openxr.errors import XrUnavailableError
from xr_runtime.openxr.graphics import choose_graphics, required_extensions
from xr_runtime.openxr.refresh_rate import choose_refresh_rate

MONADO = {"XR_KHR_opengl_enable", "XR_MNDX_egl_enable", "XR_KHR_composition_layer_depth"}
STEAMVR_LINUX = {"XR_KHR_opengl_enable", "XR_KHR_vulkan_enable2"}   # no XR_MNDX_egl_enable
X = {"DISPLAY": ":1"}


# ------------------------------------------------------------------------------------ binding

@pytest.mark.parametrize("offered, env, kind", [
    (MONADO, {}, "egl"),                       # headless CI: no display, runtime has EGL
    (MONADO, {"WAYLAND_DISPLAY": "wayland-0"}, "egl"),  # Wayland only: no X for GLX
    (MONADO, X, "glx"),                        # a desktop: GLX even though EGL is offered
    (STEAMVR_LINUX, X, "glx"),                 # SteamVR on Linux offers only GLX
])
def test_auto_binding_on_linux(offered, env, kind):
    choice = choose_graphics("auto", offered, env, platform="linux")
    assert choice.kind == kind and choice.reason


def test_auto_without_display_and_without_egl_is_a_clear_error():
    with pytest.raises(XrUnavailableError, match="no XR_MNDX_egl_enable.*no X display"):
        choose_graphics("auto", STEAMVR_LINUX, {}, platform="linux")


def test_auto_on_windows_is_win32():
    assert choose_graphics("auto", STEAMVR_LINUX, {}, platform="win32").kind == "win32"


@pytest.mark.parametrize("requested, offered, env, platform, message", [
    ("egl", STEAMVR_LINUX, X, "linux", "lacks XR_MNDX_egl_enable"),
    ("glx", MONADO, {}, "linux", "needs an X display"),
    ("win32", MONADO, X, "linux", "needs Windows"),
    ("glx", MONADO, X, "win32", "needs Linux"),
    ("auto", {"XR_KHR_vulkan_enable2"}, X, "linux", "lacks XR_KHR_opengl_enable"),
])
def test_impossible_bindings_say_why(requested, offered, env, platform, message):
    with pytest.raises(XrUnavailableError, match=message):
        choose_graphics(requested, offered, env, platform=platform)


def test_explicit_bindings_and_their_extensions():
    assert choose_graphics("egl", MONADO, X, platform="linux").kind == "egl"
    assert choose_graphics("glx", STEAMVR_LINUX, X, platform="linux").reason == "requested"
    assert required_extensions("egl") == ("XR_KHR_opengl_enable", "XR_MNDX_egl_enable")
    assert required_extensions("glx") == ("XR_KHR_opengl_enable",)
    assert required_extensions("win32") == ("XR_KHR_opengl_enable",)
    with pytest.raises(ValueError):
        choose_graphics("vulkan", MONADO, X, platform="linux")


# --------------------------------------------------------------------------------------- MSAA

def test_msaa_automatic_is_on_for_gpus_and_off_for_software_rasterisers():
    assert choose_samples(None, "NVIDIA H100 80GB HBM3/PCIe/SSE2", 32).samples == 4
    assert choose_samples(None, "AMD Radeon RX 7900 XTX (radeonsi, navi31, LLVM 17)", 8).samples == 4
    off = choose_samples(None, "llvmpipe (LLVM 15.0.6, 256 bits)", 4)
    assert off.samples == 0 and "software" in off.reason
    assert is_software_renderer("Mesa softpipe") and not is_software_renderer("Mesa Intel(R) Arc(tm) A770")


def test_msaa_requests_are_clamped_to_gl_max_samples():
    assert choose_samples(8, "llvmpipe", 4).samples == 4           # explicit wins over the software rule
    assert "clamped" in choose_samples(8, "llvmpipe", 4).reason
    assert choose_samples(4, "Some GPU", 16).samples == 4
    assert choose_samples(1, "Some GPU", 16).samples == 0          # one sample is no multisampling
    assert choose_samples(0, "Some GPU", 16).samples == 0
    assert choose_samples(None, "Some GPU", 0).samples == 0        # no multisample support at all
    assert choose_samples(4, "Some GPU", 1).samples == 0
    with pytest.raises(ValueError):
        choose_samples(-1, "Some GPU", 4)


# ------------------------------------------------------------------------------- refresh rate

def test_refresh_rate_defaults_to_the_highest_offered():
    assert choose_refresh_rate([72.0, 90.0, 120.0, 80.0], None) == 120.0
    assert choose_refresh_rate([20.0], None) == 20.0
    assert choose_refresh_rate([], None) is None
    assert choose_refresh_rate([], 90.0) is None


def test_refresh_rate_wish_takes_the_nearest_offered_rate():
    offered = [72.0, 80.0, 90.0, 120.0]
    assert choose_refresh_rate(offered, 90.0) == 90.0
    assert choose_refresh_rate(offered, 89.9) == 90.0
    assert choose_refresh_rate(offered, 100.0) == 90.0
    assert choose_refresh_rate(offered, 105.0) == 120.0            # tie 90/120: the higher
    assert choose_refresh_rate(offered, 144.0) == 120.0
    assert choose_refresh_rate([20.0], 90.0) == 20.0


def test_refresh_rate_change_events_are_recorded():
    """The runtime's change event, as the real pyopenxr struct the session casts it to."""
    from xr_runtime.gl.platform import import_xr
    from xr_runtime.openxr.refresh_rate import RefreshRateState

    xr = import_xr()
    state = RefreshRateState(offered=[72.0, 90.0], requested=90.0, current=90.0)
    state.on_changed(xr.EventDataDisplayRefreshRateChangedFB(from_display_refresh_rate=90.0,
                                                             to_display_refresh_rate=72.0))
    assert state.current == 72.0 and state.changes == [(90.0, 72.0)]
    assert state.as_dict()["changes"] == [[90.0, 72.0]]
