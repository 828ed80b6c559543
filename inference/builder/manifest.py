"""avatar.json contents and the exported mesh, assembled from a finished build's parts (the package
writer adds the schema version, the ``weights`` block and the file checksums)."""
from __future__ import annotations

import platform
from dataclasses import asdict
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np

from inference.avatar_package import CANONICAL_UNIT_M, SCHEMA_ID, SCHEMA_VERSION
from inference.head_model.blendshapes import Blendshapes
from inference.head_model.gltf_io import MeshArrays
from inference.head_model.head_mesh import HeadMesh
from inference.head_model.vae import VaeConfig

from .sources import Source


def feature_normalisation(gain: float, norm_mode: str) -> dict:
    """How the ``mp478`` features the animation network expects are made (capture node) and
    normalised (package tensors ``anim.norm.*``)."""
    return {
        "status": "trained",
        "method": "canonical similarity alignment (Umeyama on stable points to the neutral), "
                  "subtraction of the driver's own neutral face, interocular distance = 1, times gain",
        "gain": gain,
        "neutral": "driver: its own neutral (headcast calibrate neutral, or estimated online by the capture "
                   "node); training: the target's own neutral, estimated the same way "
                   "(calibration/neutral.py estimate_neutral over the kept frames, realigned, re-estimated)",
        "scale": {"mode": norm_mode, "tensors": ["anim.norm.mean", "anim.norm.std"],
                  "apply": "(features.reshape(-1) - mean) / std"},
    }


HEAD_MODEL_ONLY = {
    "included": False, "lstm": None,
    "note": "LSTM + residual expression encoder are trained by a later issue; this package holds the head model only",
}


def export_mesh(mesh: HeadMesh, blendshapes: Blendshapes) -> MeshArrays:
    """Neutral head and morph targets in metres; morph targets are the blendshapes carried through
    the mesh's face map, so closure vertices move with the face exactly as at build time."""
    morph = np.einsum("vj,kjc->kvc", mesh.face_map, blendshapes.basis) * CANONICAL_UNIT_M
    return MeshArrays((mesh.positions * CANONICAL_UNIT_M).astype(np.float32), mesh.uvs.astype(np.float32),
                      mesh.faces.astype(np.uint32), morph.astype(np.float32))


def library_versions() -> dict:
    out = {"python": platform.python_version()}
    for name in ("torch", "numpy", "opencv-python-headless", "mediapipe", "safetensors", "pygltflib"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def build_manifest(*, name: str, vae: VaeConfig, mesh: HeadMesh, explained_variance: float, train_config,
                   animation: dict | None, sources: tuple[Source, ...], command: str, builder_version: str,
                   device: str, quick: bool, build: dict, metrics: dict,
                   feature_normalisation: dict | None = None) -> dict:
    """Everything but the per-file checksums, which the package writer adds."""
    return {
        "schema": SCHEMA_ID, "schema_version": SCHEMA_VERSION,
        "name": name,
        "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "feature": {"kind": "mp478", "normalisation": feature_normalisation or {
            "status": "placeholder",
            "method": "canonical similarity alignment, driver-neutral subtraction, scale by interocular",
            "note": "set by the animation-network build step; not yet included"}},
        "head_model": {
            "z_dim": vae.z_dim, "texture_size": vae.texture_size, "texture_format": "RGBA8",
            "texture_layout": "row 0 = glTF V 0 (top of atlas); upload rows in order",
            "n_blendshapes": vae.n_weights, "n_vertices": int(len(mesh.positions)),
            "n_triangles": int(len(mesh.faces)), "units": "m", "canonical_unit_m": CANONICAL_UNIT_M,
            "explained_geometry_variance": explained_variance,
            "vae": vae.to_json(),
            "train": asdict(train_config),
        },
        "animation": animation if animation is not None else dict(HEAD_MODEL_ONLY),
        "provenance": {
            "sources": [{"name": Path(s.path).name, "sha256": s.sha256, "frames": s.frames,
                         "fps": s.fps, "width": s.width, "height": s.height} for s in sources],
            "build_command": command or "headcast build-avatar",
            "builder_version": builder_version, "libraries": library_versions(),
            "device": device, "quick": quick, "res": vae.texture_size,
        },
        "build": build,
        "metrics": metrics,
    }
