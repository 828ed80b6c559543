"""One participant in a shared room: its capture node (a child process) and its render node (here).

    stats = run_participant(ParticipantConfig(room="tcp://host:7000", name="alice", avatar=Path("pkg"),
                                              source="0", render=RenderSessionConfig(...)), say=print)

In order: connect to the room (`room.client`), upload the avatar package unless the room already
holds its sha256, register the slot (stream id = the name), start the capture node against the
room's relay, then run render sessions on the room's scene until the time/frame limit or a signal.
A session is rebuilt when a slot appears that it does not show (an engine holds its avatars from
the start); a slot that goes away is hidden at once, without a rebuild. With
``headset_face`` there is no capture node: the render node's OpenXR session publishes the wearer's
face (headset face tracking, expr52) as the participant's stream instead. Packages of other
participants are fetched by sha256 and verified (`room.package_store.install_package`) before
anything loads them. Clocks: the capture node pings the room's clock service and this render node
does too (`room.room_clock`), so frame times map capture host → room → here. Whatever ends the run — limit, Ctrl-C, SIGTERM, an error — the capture node's
process group is terminated (then killed) and a clean exit leaves the room (frees the slot); a
participant killed with -9 leaves its slot to the room's grace period instead.
"""
from __future__ import annotations

import dataclasses
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core.errors import HeadcastError
from room.client import RoomClient, RoomClientConfig, RoomRequestError
from room.endpoints import RoomEndpoints
from room.package_store import PackageStoreError, install_package, pack_package, package_sha256
from room.room_clock import RoomClock
from streaming.sockets import CurveClient
from xr_runtime.local_session import stop_process
from xr_runtime.render_session import RenderSessionConfig, run_render_session
from xr_runtime.room_link import RoomSceneLink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParticipantConfig:
    room: str                                   # the room's base endpoint (tcp://HOST:PORT)
    name: str                                   # participant name = stream id = slot id
    avatar: Path
    source: str | None                          # camera index / video file for the capture node; None: none
    render: RenderSessionConfig                 # scene/bind are replaced; backend, limits, engine are used
    curve: CurveClient | None = None
    mirror: bool = False
    packages_dir: Path = Path("room-packages")  # fetched packages, by sha256
    realtime: bool = True
    loop: bool = True
    capture_args: tuple[str, ...] = ()
    capture_log: Path | None = None
    join_timeout_s: float = 10.0
    heartbeat_interval_s: float = 0.5
    # No capture node: the OpenXR session's face tracking publishes this participant's stream
    # (xr_runtime/openxr/face_tracking.WearerFaceStream) into the room, with this key and the
    # room's clock, exactly where a capture node would.
    headset_face: bool = False


def _start_capture(cfg: ParticipantConfig, endpoints: RoomEndpoints) -> subprocess.Popen | None:
    if cfg.source is None:
        return None
    cmd = [sys.executable, "-m", "tools.cli", "capture", "--source", cfg.source, "--connect", endpoints.streams_in,
           "--stream", cfg.name, "--clock", endpoints.clock, *(["--realtime"] if cfg.realtime else []),
           *(["--loop"] if cfg.loop else []), *cfg.capture_args]
    if cfg.curve is not None:
        cmd += ["--server-key", str(cfg.curve.server_public_key_file), "--client-key", str(cfg.curve.secret_key_file)]
    out = open(cfg.capture_log, "ab") if cfg.capture_log else subprocess.DEVNULL
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if cfg.capture_log else None,
                                start_new_session=True, preexec_fn=_death_signal())  # noqa: PLW1509
    finally:
        if cfg.capture_log:
            out.close()


def _death_signal():
    """A pre-exec hook that asks for SIGTERM when the participant process dies, even by kill -9
    (Linux PR_SET_PDEATHSIG), so a killed participant never leaves a capture node streaming its face.
    libc is loaded here, in the parent: the hook itself runs between fork and exec, where a
    multithreaded parent's child may only make the one call."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL("libc.so.6", use_errno=True).prctl
    return lambda: prctl(1, signal.SIGTERM, 0, 0, 0)   # PR_SET_PDEATHSIG


def _register(client: RoomClient, cfg: ParticipantConfig, say) -> str:
    try:
        data = pack_package(cfg.avatar)
    except PackageStoreError as exc:
        raise HeadcastError(f"--avatar: {exc}") from exc
    sha = package_sha256(data)
    try:
        has = client.call({"op": "has", "sha256": sha})[0].get("has")
        deadline = time.monotonic() + 60.0
        while not has:
            try:
                client.call({"op": "upload", "sha256": sha}, data, timeout_s=60.0)
                say(f"uploaded avatar package {sha[:12]} ({len(data) / 1e6:.1f} MB)")
                break
            except RoomRequestError as exc:
                if exc.reason != "busy" or time.monotonic() > deadline:
                    raise
                time.sleep(0.5)   # someone else's package is being validated
                has = client.call({"op": "has", "sha256": sha})[0].get("has")
        client.call({"op": "register", "stream": cfg.name, "package_sha256": sha})
    except RoomRequestError as exc:
        raise HeadcastError(f"the room refused {cfg.name}: {exc}") from exc
    return sha


def _fetch_missing(client: RoomClient, link: RoomSceneLink, packages: dict[str, Path], root: Path, say,
                   refused: set[str]) -> None:
    for rec in link.wanted_slots().values():
        sha = rec["package_sha256"]
        if sha in packages or sha in refused:
            continue
        try:
            _, data = client.call({"op": "fetch", "sha256": sha}, timeout_s=60.0)
            packages[sha] = install_package(data or b"", sha, root)
            say(f"fetched avatar package {sha[:12]} for {rec['participant']}")
        except (RoomRequestError, PackageStoreError) as exc:
            refused.add(sha)    # not asked again in this run (a rebuild loop would follow)
            log.warning("package %s of %s not loaded: %s", sha[:12], rec["participant"], exc)


def run_participant(cfg: ParticipantConfig, say: Callable[[str], None] = log.info) -> dict:
    endpoints = RoomEndpoints.from_base(cfg.room)
    client = RoomClient(RoomClientConfig(endpoints, cfg.name, cfg.curve,
                                         heartbeat_interval_s=cfg.heartbeat_interval_s)).start()
    capture = None
    clock = RoomClock(client, endpoints.clock, cfg.curve).start()
    quit_event = threading.Event()
    previous = {s: signal.signal(s, lambda *_: quit_event.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    sessions: list[dict] = []
    left_cleanly = False
    try:
        if not client.wait_synced(cfg.join_timeout_s):
            raise HeadcastError(f"no answer from the room at {endpoints.control} within {cfg.join_timeout_s:.0f} s "
                                "(is `headcast room serve` running there, and are the keys right?)")
        own_sha = _register(client, cfg, say)
        say(f"joined room {cfg.room} as {cfg.name}")
        capture = _start_capture(cfg, endpoints)
        link = RoomSceneLink(client, cfg.name, cfg.mirror)
        packages: dict[str, Path] = {own_sha: Path(cfg.avatar)}
        refused: set[str] = set()
        t_end = None if cfg.render.seconds is None else time.monotonic() + cfg.render.seconds
        frames_left = cfg.render.frames
        while not quit_event.is_set():
            _fetch_missing(client, link, packages, cfg.packages_dir, say, refused)
            scene = link.render_scene(packages)
            restart = threading.Event()
            stop = threading.Event()

            def watch(scene=scene, stop=stop, restart=restart):
                while not stop.is_set():
                    if quit_event.is_set():
                        stop.set()
                        return
                    if link.needs_restart(scene, packages) or _missing(link, packages, refused):
                        restart.set()     # fetch between sessions, then rebuild
                        stop.set()
                        return
                    time.sleep(0.2)

            watcher = threading.Thread(target=watch, name="headcast-room-watch", daemon=True)
            watcher.start()
            seconds = None if t_end is None else max(0.0, t_end - time.monotonic())
            if seconds is not None and seconds <= 0:
                break
            render = cfg.render
            if cfg.headset_face:
                render = dataclasses.replace(render, backend_options=dataclasses.replace(
                    render.backend_options, face_stream=cfg.name, face_connect=endpoints.streams_in,
                    face_curve=cfg.curve, face_clock=endpoints.clock))
            run_cfg = dataclasses.replace(render, scene=scene, connect=endpoints.streams_out,
                                          curve_client=cfg.curve, scene_link=link, stop=stop, seconds=seconds,
                                          frames=frames_left, clock_bind="off", clock=clock)
            say(f"showing {len(scene.avatars)} avatar(s): {', '.join(s.stream for s in scene.avatars) or 'none yet'}")
            try:
                stats, _node = run_render_session(run_cfg, say=say)
            finally:
                stop.set()
                watcher.join(1.0)
            sessions.append(stats)
            if frames_left is not None:
                frames_left -= stats.get("frames", 0)
                if frames_left <= 0:
                    break
            if not restart.is_set():
                break
            say("the room's slots changed: rebuilding the render node")
        left_cleanly = True
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        stop_process(capture, grace_s=5.0)
        clock.close()
        client.close(leave=left_cleanly)
    result = dict(sessions[-1]) if sessions else {}
    result["sessions"] = len(sessions)
    result["frames_total"] = sum(s.get("frames", 0) for s in sessions)
    result["participant"] = cfg.name
    result["capture_exit"] = None if capture is None else capture.returncode
    return result


def _missing(link: RoomSceneLink, packages: dict[str, Path], refused: set[str]) -> bool:
    return any(rec["package_sha256"] not in packages and rec["package_sha256"] not in refused
               for rec in link.wanted_slots().values())


__all__ = ["ParticipantConfig", "run_participant"]
