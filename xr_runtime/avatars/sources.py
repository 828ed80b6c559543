"""Which avatar state source drives a render node's slots, and the assets that go with it.

    setup = make_state_source(scene, receiver, StateSourceConfig(engine="auto"))
    node = RenderNode(scene, setup.assets, setup.source, ...)
    ...; setup.close()

Engines (`StateSourceConfig.engine`):

* ``package``: each slot's package — mesh, decoder, animation network — on the streaming engine
  (receiver → LSTM → decoder on a worker thread; `engine_source`). The product path.
* ``auto`` (default): that when every package carries an animation network, else ``none``.
* ``none``: each avatar shows its idle face and fades with its stream's presence (live, face
  lost, lost) — packages without a network, and `dev_avatars`.
* ``reference`` (development): untrained reference avatars through the real engine, so the whole
  live path runs without packages.

Every package is loaded (validated, hashed) once, whatever the engine.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable

from calibration.head_pose import HeadMotionConfig
from core.errors import HeadcastError
from xr_runtime.avatars.assets import AvatarAssets, dev_assets, idle_assets, load_packages, package_for
from xr_runtime.avatars.state import AvatarStateSource

log = logging.getLogger(__name__)

ENGINES = ("auto", "package", "reference", "none")


@dataclass(frozen=True)
class StateSourceConfig:
    engine: str = "auto"                 # one of ENGINES
    device: str = "cpu"                  # the streaming engine's device (cpu, cuda, cuda:N)
    dev_avatars: bool = False            # the procedural test head on every slot (engine none)
    head_motion: HeadMotionConfig | None = HeadMotionConfig()  # None: heads stay still on their slots
    pacing: str = "frames"               # the engine steps when a frame arrives, or "timer" (every 1/60 s)


@dataclass
class StateSourceSetup:
    source: AvatarStateSource
    assets: list[AvatarAssets]
    close: Callable[[], None] | None     # stops the source's worker, if it has one
    description: str                     # one line for the user: what animates the avatars
    engine_driven: bool                  # the engine relaxes to the idle face itself (short node fade)


def make_state_source(scene, receiver, config: StateSourceConfig = StateSourceConfig(), clock=None) -> StateSourceSetup:
    """The state source for `scene`'s slots reading `receiver`; raises `HeadcastError` (a package
    that is wrong, or ``package`` asked of a package without an animation network)."""
    from inference.avatar_package import AvatarPackageError
    from xr_runtime.avatars.engine_source import package_engine_source, reference_engine_source

    engine = config.engine
    if engine not in ENGINES:
        raise HeadcastError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")
    if config.dev_avatars:
        if engine in ("package", "reference"):
            raise HeadcastError(f"engine {engine} brings its own avatars; drop the development avatars")
        return _idle_faces(scene, receiver, dev_assets(len(scene.avatars)))
    if engine == "reference":
        source, assets = reference_engine_source(scene, receiver, device=config.device, clock=clock,
                                                 head_motion=config.head_motion, pacing=config.pacing)
        return StateSourceSetup(source, assets, source.stop, "untrained reference avatars on the streaming engine "
                                f"({config.device})", True)
    try:
        packages = load_packages(scene)
    except AvatarPackageError as exc:
        raise HeadcastError(str(exc)) from exc
    if engine in ("package", "auto"):
        try:
            source, assets = package_engine_source(scene, receiver, packages, device=config.device, clock=clock,
                                                   head_motion=config.head_motion, pacing=config.pacing)
            return StateSourceSetup(source, assets, source.stop, f"streaming engine on {config.device} with the "
                                    f"packages' animation networks, stepping on {source.pacing.mode}", True)
        except ValueError as exc:
            if engine == "package":
                raise HeadcastError(str(exc)) from exc
            log.warning("%s: showing idle faces", exc)
    assets = [idle_assets(package_for(packages, slot)) for slot in scene.avatars]
    return _idle_faces(scene, receiver, assets)


def _idle_faces(scene, receiver, assets: list[AvatarAssets]) -> StateSourceSetup:
    from xr_runtime.avatars.dev_source import StaticAvatarStateSource, StaticStream

    log.warning("no animation engine for these avatars: they show their idle face, fading with their "
                "stream's presence")
    streams = {slot.stream: StaticStream(a.neutral_texture, a.weights0()) for slot, a in zip(scene.avatars, assets)}
    return StateSourceSetup(StaticAvatarStateSource(streams, receiver=receiver), assets, None,
                            "idle faces fading with their streams (no animation engine)", False)


__all__ = ["ENGINES", "StateSourceConfig", "StateSourceSetup", "make_state_source"]
