"""Which backend to use when the user did not say: OpenXR if a runtime is active and answers,
else a desktop window if there is a display, else headless.

"Active" follows the OpenXR loader's rules on Linux: `XR_RUNTIME_JSON`, or an
`openxr/1/active_runtime.json` under $XDG_CONFIG_HOME (~/.config), each of $XDG_CONFIG_DIRS
(/etc/xdg), /usr/local/etc or /etc. A manifest alone is not enough (the service may not be
running): an instance must actually be created, which is what the probe does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

BACKENDS = ("openxr", "desktop", "headless")


@dataclass(frozen=True)
class BackendChoice:
    name: str
    reason: str


def active_runtime_manifest(env: Mapping[str, str] = os.environ) -> Path | None:
    explicit = env.get("XR_RUNTIME_JSON")
    if explicit:
        return Path(explicit)
    home = env.get("XDG_CONFIG_HOME") or (str(Path(env["HOME"]) / ".config") if env.get("HOME") else "")
    dirs = [home] if home else []
    dirs += (env.get("XDG_CONFIG_DIRS") or "/etc/xdg").split(":")
    dirs += ["/usr/local/etc", "/etc"]
    for d in dirs:
        if d:
            candidate = Path(d) / "openxr" / "1" / "active_runtime.json"
            if candidate.is_file():
                return candidate
    return None


def probe_openxr() -> tuple[bool, str]:
    """Create and destroy an OpenXR instance with the OpenGL extension; (works, why not)."""
    try:
        from xr_runtime.gl.platform import import_xr

        xr = import_xr()
        offered = {e.extension_name.decode() for e in xr.enumerate_instance_extension_properties()}
        if "XR_KHR_opengl_enable" not in offered:
            return False, "the runtime offers no XR_KHR_opengl_enable"
        instance = xr.create_instance(xr.InstanceCreateInfo(
            application_info=xr.ApplicationInfo(application_name="headcast-probe", api_version=xr.Version(1, 0, 0)),
            enabled_extension_names=["XR_KHR_opengl_enable"]))
        try:
            xr.get_system(instance, xr.SystemGetInfo(form_factor=xr.FormFactor.HEAD_MOUNTED_DISPLAY))
        finally:
            xr.destroy_instance(instance)
        return True, ""
    except Exception as exc:  # no loader, no runtime, no HMD: all mean "not OpenXR here"
        return False, f"{type(exc).__name__}: {exc}"


def has_display(env: Mapping[str, str] = os.environ) -> bool:
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def choose_backend(requested: str = "auto", env: Mapping[str, str] = os.environ,
                   probe: Callable[[], tuple[bool, str]] = probe_openxr) -> BackendChoice:
    if requested in BACKENDS:
        return BackendChoice(requested, "requested")
    if requested != "auto":
        raise ValueError(f"unknown backend {requested!r} (choose from auto, {', '.join(BACKENDS)})")
    manifest = active_runtime_manifest(env)
    why_not_xr = "no active OpenXR runtime (XR_RUNTIME_JSON unset, no active_runtime.json)"
    if manifest is not None:
        ok, why = probe()
        if ok:
            return BackendChoice("openxr", f"OpenXR runtime {manifest} answers")
        why_not_xr = f"OpenXR runtime {manifest} did not answer ({why})"
    if has_display(env):
        return BackendChoice("desktop", f"{why_not_xr}; a display is set")
    return BackendChoice("headless", f"{why_not_xr}; no DISPLAY or WAYLAND_DISPLAY")
