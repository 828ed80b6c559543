"""What the renderer needs of one slot's avatar (`AvatarAssets`), and where it comes from.

Assets come from an avatar package (mesh + blendshapes, and the idle face — the look an avatar
shows before its stream starts and fades back to when it is lost) or from the procedural
development head. Slots that share a package share one load: a package is read and hashed once.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xr_runtime.avatars.mesh import AvatarMeshData, TorsoMeshData


@dataclass(frozen=True)
class AvatarAssets:
    """What the renderer needs of one slot's avatar, independent of where it came from."""

    mesh: AvatarMeshData
    neutral_texture: np.ndarray          # (H, W, 4) uint8: the idle look, and the texture size
    neutral_weights: np.ndarray | None = None   # (K,), default zeros
    # The package's screen-space refinement (RefineNet, RefinementConfig) and its manifest's
    # default per path ({"cpu": bool, "cuda": bool}: on where it measured better and, on the CPU,
    # within budget); None: the avatar has none.
    refinement: tuple | None = None
    refinement_default: dict | None = None

    def weights0(self) -> np.ndarray:
        if self.neutral_weights is None:
            return np.zeros(self.mesh.blendshape_count, dtype=np.float32)
        return np.asarray(self.neutral_weights, dtype=np.float32)


def mesh_data(package) -> AvatarMeshData:
    """The renderer's mesh of a loaded `AvatarPackage`."""
    mesh = package.mesh
    torso = None
    if mesh.torso is not None:
        t = mesh.torso
        torso = TorsoMeshData(t.positions, t.uvs, t.indices, t.texture)
    return AvatarMeshData(mesh.positions, mesh.uvs, mesh.indices, mesh.blendshapes,
                          body_weights=mesh.body_weight if torso is not None else None, torso=torso)


def dev_assets(count: int) -> list[AvatarAssets]:
    """The procedural development head on `count` slots (no packages needed)."""
    from xr_runtime.avatars.dev_source import dev_head_mesh, dev_texture

    return [AvatarAssets(dev_head_mesh(), dev_texture(128)) for _ in range(count)]


def load_packages(scene) -> dict[Path, object]:
    """Every package the scene's slots name, loaded (validated, hashed) once: resolved path → package.

    Raises `AvatarPackageError` naming the package that is wrong."""
    from inference.avatar_package import AvatarPackage

    packages: dict[Path, object] = {}
    for slot in scene.avatars:
        key = Path(slot.package).resolve()
        if key not in packages:
            packages[key] = AvatarPackage.load(slot.package)
    return packages


def package_for(packages: dict, slot):
    return packages[Path(slot.package).resolve()]


def idle_assets(package) -> AvatarAssets:
    """A package's mesh and its idle face (`inference.engine.package_loader.idle_face`: the network's
    neutral latent — the face the engine relaxes to — whichever source drives the slot)."""
    from inference.engine.package_loader import idle_face

    default = dict(package.manifest.raw.get("refinement", {}).get("default", {})) if package.refinement else None
    return AvatarAssets(mesh_data(package), *idle_face(package), refinement=package.refinement,
                        refinement_default=default)


__all__ = ["AvatarAssets", "dev_assets", "idle_assets", "load_packages", "mesh_data", "package_for"]
