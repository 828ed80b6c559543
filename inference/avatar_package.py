"""The avatar package (DESIGN.md "Contracts"): a directory with avatar.json, weights.safetensors,
mesh.glb and preview.png.

What the package holds is what the render node runs, nothing more (schema 2). weights.safetensors
carries the head model's VAE *decoder* (``decoder.*``: z → dynamic texture + blendshape weights)
and, when the manifest declares one, the animation network (``anim.*``). The VAE *encoder*
(texture + weights → z) is used only while building: it gives the animation network its training
targets and scores the held-out frames. It stays in the build's work directory
(``vae/vae.safetensors``, the whole VAE), where a rebuild or fine-tune finds it; leaving it out
took the default avatar's package from 34 MB to 18 MB (docs/AVATAR.md). The manifest's
``weights`` block says what the file holds and what it leaves out; the file's own safetensors
header says it too (``schema``, ``schema_version``, ``holds``) together with ``manifest_sha256``,
the sha256 of the manifest it was written with (see ``manifest_digest``), so a weights file found
on its own names its package and a hand-edited avatar.json is caught.

Schema 1 packages (built before builder version 7) carry the encoder as well; they still load: its
tensors are validated as before and then dropped, since nothing at runtime uses them.

Writing is atomic: everything goes into a hidden temporary directory beside the target (each file
written and fsynced by core.atomic_files), and only then is it renamed into place and the parent
directory fsynced, so an interrupted export never leaves a package that looks valid. Loading checks
the schema and version, every file's size and sha256 (the manifest lists them), the weights' names
and shapes against the manifest's network config and the mesh against the blendshape count, and
names the first thing that is wrong.

A package whose manifest declares an animation network (``animation.included``; the block written
by inference/animation/serialize.py ``animation_manifest``) carries its ``anim.*`` tensors in the
same weights file; they are validated strictly against that block (every tensor present, none
extra, shapes, finite values, feature kind and z size matching the head model) and exposed as
``AvatarPackage.animation`` = (AnimationNet, FeatureNormalisation).

A package is user input, so loading it must never cost more than the package is worth (issue 11:
an animation window of 10^9 passed `avatar info` and then asked `render` for 5 TiB; a texture size
of 16384 allocated 3.5 GB before a shape check refused it). Every size in the schema is bounded
(`LIMITS`: far above what the builder writes, far below what would hurt), integers are JSON
integers, the ``vae`` block has exactly its six keys, the manifest is strict JSON of bounded size
and depth, the files are regular files inside the package (a symlink leaving it is refused), and
the weights' names and shapes are compared with the network the manifest declares — built on
PyTorch's meta device, which allocates nothing — before a single tensor is read.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.atomic_files import atomic_write_bytes, atomic_write_json, fsync_dir, pid_alive, sha256_file
from core.errors import HeadcastError
from core.strict_json import StrictJsonError, load_strict, validate_strict
from inference.head_model.gltf_io import GltfError, MeshArrays, read_glb, write_glb
from inference.head_model.vae import Decoder, HeadVae, RuntimeDecoder, VaeConfig

log = logging.getLogger(__name__)

SCHEMA_ID = "headcast.avatar"
SCHEMA_VERSION = 2  # 2: the weights carry the decoder only, and say so; 1: the whole VAE
READABLE_VERSIONS = (1, 2)
MANIFEST = "avatar.json"
WEIGHTS = "weights.safetensors"
MESH = "mesh.glb"
PREVIEW = "preview.png"
PAYLOAD = (WEIGHTS, MESH, PREVIEW)
FILE_MODE = 0o644  # packages are shared artefacts (safetensors alone would create 0600 files)
CANONICAL_UNIT_M = 0.063  # canonical unit = distance between the eye centres, ~63 mm for adults

DECODER_PREFIX = "decoder."
ENCODER_PREFIX = "encoder."
ANIMATION_PREFIX = "anim."  # the animation network's tensors (inference/animation/serialize.py)
REFINE_PREFIX = "refine."  # the screen-space refinement network (inference/head_model/refinement.py)
ALPHA_PREFIX = "alpha."  # the whole head's learned edge-on alpha (inference/head_model/alpha_atlas.py)
# What each prefix of weights.safetensors is, as the manifest's ``weights`` block and the file's
# header say it.
HOLDS = {
    DECODER_PREFIX: "head model VAE decoder: z -> dynamic texture (RGB atlas) + blendshape weights; "
                    "what the render node runs every frame",
    ANIMATION_PREFIX: "animation network: expression features (a window of frames) -> z; with its feature "
                      "normalisation and the target's relaxed face",
    REFINE_PREFIX: "screen-space refinement U-Net: rasterised avatar (premultiplied colour + alpha) -> corrected "
                   "colour + matte (builder 8, whole-head packages; the manifest's refinement block)",
    ALPHA_PREFIX: "the whole head's learned alpha: (S, S) uint8, alpha seen edge-on, the texture's A channel "
                  "(builder 9, whole-head packages; the manifest's alpha block)",
}
NOT_INCLUDED = {
    ENCODER_PREFIX: "head model VAE encoder (texture + blendshape weights -> z): used only while building "
                    "(the animation network's training targets, held-out scores); kept in the build's work "
                    "directory, vae/vae.safetensors",
}

# Upper bounds of every size a manifest declares. The builder's avatars: z 16-64, textures 64-256,
# 13-32 blendshapes, ~800-5000 vertices, window 8, hidden 128-256.
LIMITS = {"z_dim": 1024, "texture_size": 2048, "n_blendshapes": 512, "n_vertices": 1 << 18,
          "n_triangles": 1 << 19, "hidden": 4096, "basis_size": 512, "n_basis": 512, "window": 64,
          "layers": 8, "feature_dim": 4096, "input_proj": 4096, "pca_dim": 4096, "parameters": 1 << 27,
          "file_bytes": 1 << 30, "basis_values": 1 << 26}
MANIFEST_MAX_BYTES = 1 << 20


def _bounded(key: str, minimum: int = 1) -> dict:
    return {"type": "integer", "minimum": minimum, "maximum": LIMITS[key]}


_INT1 = {"type": "integer", "minimum": 1}
# The animation block (inference/animation/serialize.py animation_manifest): required in full once
# a package declares an animation network; a head-model-only package just says included = false.
_ANIMATION = {
    "type": "object", "required": ["included"],
    "properties": {"included": {"type": "boolean"}},
    "if": {"properties": {"included": {"const": True}}},
    "then": {
        "required": ["format", "feature_kind", "feature_dim", "z_dim", "window", "config", "normalisation",
                     "parameters", "metrics"],
        "properties": {
            "format": {"type": "integer"},
            "feature_kind": {"enum": ["mp478", "deca2048"]},
            "feature_dim": _bounded("feature_dim"), "z_dim": _bounded("z_dim"), "window": _bounded("window"),
            "parameters": _bounded("parameters"),
            "config": {"type": "object", "required": ["arch", "window", "hidden", "layers", "pca_dim", "input_proj"],
                       "properties": {"arch": {"enum": ["lstm", "mlp"]}, "window": _bounded("window"),
                                      "hidden": _bounded("hidden"), "layers": _bounded("layers"),
                                      "pca_dim": _bounded("pca_dim", 0), "input_proj": _bounded("input_proj"),
                                      "last_frame_skip": {"type": "boolean"}}},
            "normalisation": {"type": "object", "required": ["mode", "dim"],
                              "properties": {"mode": {"enum": ["zero_centred", "per_dim"]}, "dim": _INT1}},
            "metrics": {"type": "object"},
        }},
}
_WEIGHTS_BLOCK = {
    "type": "object", "required": ["file", "holds", "not_included"],
    "properties": {"file": {"const": WEIGHTS},
                   "holds": {"type": "object", "required": [DECODER_PREFIX],
                             "additionalProperties": {"type": "string"}},
                   "not_included": {"type": "object", "additionalProperties": {"type": "string"}}},
}
_FILE_ENTRY = {"type": "object", "required": ["sha256", "bytes"],
               "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                              "bytes": _bounded("file_bytes")}}
MANIFEST_SCHEMA = {
    "type": "object",
    "required": ["schema", "schema_version", "name", "created_utc", "feature", "head_model", "animation",
                 "provenance", "metrics", "files"],
    "properties": {
        "schema": {"const": SCHEMA_ID},
        "schema_version": {"enum": list(READABLE_VERSIONS)},
        "name": {"type": "string", "minLength": 1},
        "created_utc": {"type": "string"},
        "feature": {"type": "object", "required": ["kind", "normalisation"],
                    "properties": {"kind": {"enum": ["mp478", "deca2048"]}, "normalisation": {"type": "object"}}},
        "head_model": {
            "type": "object",
            "required": ["z_dim", "texture_size", "texture_format", "n_blendshapes", "n_vertices", "n_triangles",
                         "units", "canonical_unit_m", "vae"],
            "properties": {
                "z_dim": _bounded("z_dim"),
                "texture_size": _bounded("texture_size", 8),
                "texture_format": {"const": "RGBA8"},
                "n_blendshapes": _bounded("n_blendshapes"),
                "n_vertices": _bounded("n_vertices", 3),
                "n_triangles": _bounded("n_triangles"),
                "units": {"const": "m"},
                "canonical_unit_m": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                "vae": {"type": "object", "additionalProperties": False,
                        "required": ["texture_size", "n_weights", "z_dim", "hidden", "basis_size", "n_basis"],
                        "properties": {"texture_size": _bounded("texture_size", 8),
                                       "n_weights": _bounded("n_blendshapes"), "z_dim": _bounded("z_dim"),
                                       "hidden": _bounded("hidden"), "basis_size": _bounded("basis_size"),
                                       "n_basis": _bounded("n_basis")}},
            }},
        "animation": _ANIMATION,
        # Optional (absent in one-kind packages): the kinds a stream may have, and how each kind
        # other than the network's own is mapped into it (inference/animation/kind_map.py).
        "feature_kinds": {"type": "array", "minItems": 1, "uniqueItems": True,
                          "items": {"enum": ["mp478", "deca2048", "expr52"]}},
        "feature_maps": {"type": "object", "additionalProperties": {"type": "object"}},
        # Optional (builder 8, the whole head): what the head contains and what was inferred, and the
        # screen-space refinement network (inference/head_model/refinement.py) when it is carried.
        "whole_head": {"type": "object"},
        "refinement": {"type": "object", "required": ["included"],
                       "properties": {"included": {"type": "boolean"}, "config": {"type": "object"}}},
        # Optional (builder 9): the whole head's learned alpha (inference/head_model/alpha_atlas.py).
        "alpha": {"type": "object", "required": ["included"], "properties": {"included": {"type": "boolean"}}},
        # Optional (builder 11): the shoulders and upper chest (inference/head_model/torso.py), in mesh.glb.
        "torso": {"type": "object", "required": ["included"], "properties": {"included": {"type": "boolean"}}},
        "provenance": {"type": "object", "required": ["sources", "build_command", "libraries"],
                       "properties": {"sources": {"type": "array", "minItems": 1, "items": {
                           "type": "object", "required": ["name", "sha256"],
                           "properties": {"sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"}}}}}},
        "metrics": {"type": "object"},
        "weights": _WEIGHTS_BLOCK,
        "files": {"type": "object", "required": list(PAYLOAD),
                  "properties": {name: _FILE_ENTRY for name in PAYLOAD}},
    },
    "if": {"properties": {"schema_version": {"const": 2}}},
    "then": {"required": ["weights"]},
}


class AvatarPackageError(HeadcastError, ValueError):
    """The package is missing, incomplete, tampered with or does not match its manifest."""


def manifest_digest(raw: dict) -> str:
    """sha256 of a manifest's body: avatar.json without its ``files`` block (which records the
    weights file's own checksum, so the weights cannot record it back), as canonical JSON (keys
    sorted, no whitespace, UTF-8). Written into the weights' header; loading compares."""
    body = json.loads(json.dumps({k: v for k, v in raw.items() if k != "files"}))  # as avatar.json reads back
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def weights_block(animation_included: bool, refinement_included: bool = False, alpha_included: bool = False) -> dict:
    """The manifest's ``weights`` block: what weights.safetensors holds, by tensor-name prefix."""
    holds = {k: v for k, v in HOLDS.items() if (animation_included or k != ANIMATION_PREFIX)
             and (refinement_included or k != REFINE_PREFIX) and (alpha_included or k != ALPHA_PREFIX)}
    return {"file": WEIGHTS, "holds": holds, "not_included": dict(NOT_INCLUDED)}


def weights_header(raw: dict) -> dict[str, str]:
    """The safetensors header metadata of a package's weights (string values, as the format wants)."""
    return {"format": "headcast-avatar", "schema": SCHEMA_ID, "schema_version": str(raw["schema_version"]),
            "manifest_sha256": manifest_digest(raw), "holds": json.dumps(raw["weights"]["holds"]),
            "not_included": json.dumps(raw["weights"]["not_included"])}


def read_weights_header(path: Path) -> dict[str, str]:
    """The header metadata of a weights.safetensors (empty when it has none)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise AvatarPackageError(f"{path}: not a readable safetensors file ({exc})") from exc


@dataclass(frozen=True)
class Manifest:
    raw: dict

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def feature_kind(self) -> str:
        return self.raw["feature"]["kind"]

    @property
    def vae(self) -> VaeConfig:
        return VaeConfig.from_json(self.raw["head_model"]["vae"])

    @property
    def z_dim(self) -> int:
        return int(self.raw["head_model"]["z_dim"])

    @property
    def texture_size(self) -> int:
        return int(self.raw["head_model"]["texture_size"])

    @property
    def n_blendshapes(self) -> int:
        return int(self.raw["head_model"]["n_blendshapes"])

    @property
    def animation_included(self) -> bool:
        return bool(self.raw["animation"]["included"])

    @property
    def refinement_included(self) -> bool:
        return bool(self.raw.get("refinement", {}).get("included", False))

    @property
    def alpha_included(self) -> bool:
        return bool(self.raw.get("alpha", {}).get("included", False))

    @property
    def metrics(self) -> dict:
        return self.raw["metrics"]

    @property
    def schema_version(self) -> int:
        return int(self.raw["schema_version"])

    @property
    def weights_holds(self) -> dict:
        """Tensor-name prefix → what it is; schema 1 packages (no ``weights`` block) held the whole VAE."""
        if "weights" in self.raw:
            return dict(self.raw["weights"]["holds"])
        holds = {ENCODER_PREFIX: "head model VAE encoder (schema 1 packages ship it; nothing at runtime uses it)",
                 DECODER_PREFIX: HOLDS[DECODER_PREFIX]}
        if self.animation_included:
            holds[ANIMATION_PREFIX] = HOLDS[ANIMATION_PREFIX]
        return holds


@dataclass
class AvatarPackage:
    path: Path
    manifest: Manifest
    mesh: MeshArrays
    decoder: RuntimeDecoder  # z → (uint8 RGBA (S, S, 4), weights (K,)); .decoder is the batched module
    extra_tensors: dict  # "anim.*" tensors of the animation network, when the manifest declares it
    # (AnimationNet, FeatureNormalisation) built from those tensors and the manifest's animation
    # block, validated; None for a head-model-only package (animation.included = false).
    animation: tuple | None = None
    # (RefineNet, RefinementConfig) of the screen-space refinement (whole-head packages, builder 8).
    refinement: tuple | None = None
    # Other feature kinds the avatar accepts, each mapped into the network's own kind
    # (inference/animation/kind_map.py): {"expr52": KindMap}; empty for a one-kind package.
    kind_maps: dict = field(default_factory=dict)
    # The whole head's learned edge-on alpha (S, S) uint8 (builder 9); None: an opaque atlas. The
    # decoder already puts it into the texture's A channel.
    alpha: np.ndarray | None = None

    @property
    def feature_kinds(self) -> tuple[str, ...]:
        """Every kind a stream may have to drive this avatar: the network's own first."""
        return (self.manifest.feature_kind, *sorted(self.kind_maps))

    @property
    def vae_decoder(self) -> Decoder:
        """The VAE decoder as a batched module: z (B, Z) → (texture (B, 3, S, S) float, weights (B, K));
        what a package is written from (write_package)."""
        from inference.head_model.alpha_atlas import AlphaDecoder

        inner = self.decoder.decoder
        return inner.decoder if isinstance(inner, AlphaDecoder) else inner

    @property
    def engine_decoder(self) -> torch.nn.Module:
        """What the engine batches: the VAE decoder, wrapped in an ``AlphaDecoder`` when the package
        carries a learned alpha (then the texture has a fourth channel, (B, 4, S, S))."""
        return self.decoder.decoder

    @staticmethod
    def load(path: str | Path) -> "AvatarPackage":
        return load_package(Path(path))


def _package_file(path: Path, name: str) -> Path:
    """`name` inside the package as a regular file; a link is followed only if it stays inside."""
    f = path / name
    if f.is_symlink():
        target = f.resolve()
        if path.resolve() not in target.parents:
            raise AvatarPackageError(f"{path}: {name} is a link to {target}, outside the package; refusing it")
    if not f.exists():
        raise AvatarPackageError(f"{path}: {name} is missing" + (
            " (incomplete or interrupted export?)" if name == MANIFEST else ""))
    if not f.is_file():
        raise AvatarPackageError(f"{path}: {name} is not a regular file")
    return f


def _read_manifest(path: Path) -> dict:
    if not path.is_dir():
        raise AvatarPackageError(f"{path}: no such avatar package directory")
    mf = _package_file(path, MANIFEST)
    try:
        raw = load_strict(mf, str(mf), max_bytes=MANIFEST_MAX_BYTES)
    except StrictJsonError as exc:
        raise AvatarPackageError(str(exc)) from None
    if not isinstance(raw, dict):
        raise AvatarPackageError(f"{mf}: top level must be an object")
    if raw.get("schema") == SCHEMA_ID and raw.get("schema_version") not in READABLE_VERSIONS:
        raise AvatarPackageError(f"{mf}: schema_version {raw.get('schema_version')!r} is not supported "
                                 f"(this build reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    try:
        validate_strict(raw, MANIFEST_SCHEMA, str(mf))
    except StrictJsonError as exc:
        raise AvatarPackageError(str(exc)) from None
    _check_sizes(mf, raw)
    return raw


def _check_sizes(mf: Path, raw: dict) -> None:
    """Bounds that span fields (the schema bounds each one alone)."""
    vae = raw["head_model"]["vae"]
    basis = vae["n_basis"] * 3 * vae["basis_size"] ** 2
    if basis > LIMITS["basis_values"]:
        raise AvatarPackageError(f"{mf}: a texture basis of {vae['n_basis']} × 3 × {vae['basis_size']}² values is "
                                 f"larger than the {LIMITS['basis_values']} allowed")
    if vae["basis_size"] > vae["texture_size"]:
        raise AvatarPackageError(f"{mf}: basis_size {vae['basis_size']} exceeds texture_size {vae['texture_size']}")
    anim = raw["animation"]
    if anim.get("included"):
        dims = {"mp478": 1434, "deca2048": 2048}
        if anim["feature_dim"] != dims[anim["feature_kind"]]:
            raise AvatarPackageError(f"{mf}: animation feature_dim {anim['feature_dim']} is not the size of "
                                     f"{anim['feature_kind']} features ({dims[anim['feature_kind']]})")
        if anim["config"]["pca_dim"] > anim["feature_dim"]:
            raise AvatarPackageError(f"{mf}: animation pca_dim {anim['config']['pca_dim']} exceeds feature_dim")


def _check_files(path: Path, raw: dict) -> None:
    for name in PAYLOAD:
        entry = raw["files"][name]
        f = _package_file(path, name)
        size = f.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "larger than recorded"
            raise AvatarPackageError(f"{path}: {name} is {what}: {size} bytes, manifest says {entry['bytes']}")
        if sha256_file(f) != entry["sha256"]:
            raise AvatarPackageError(f"{path}: {name} sha256 does not match the manifest (file was modified)")


VAE_PREFIXES = (ENCODER_PREFIX, DECODER_PREFIX)


def _expected_head_model(cfg: VaeConfig, schema_version: int) -> dict[str, torch.Tensor]:
    """Name → tensor of the right shape for the head model's part of the weights: the decoder
    (schema 2), or the whole VAE (schema 1: the encoder too). On the meta device: shapes only,
    nothing allocated, whatever sizes the manifest declares."""
    with torch.device("meta"):
        if schema_version == 1:
            return HeadVae(cfg).state_dict()
        return {DECODER_PREFIX + k: v for k, v in Decoder(cfg).state_dict().items()}


def _stored_shapes(file: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape from a safetensors header (reads the header only)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(file), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise AvatarPackageError(f"{file.parent}: {WEIGHTS} is not a readable safetensors file ({exc})") from exc


def _load_weights(path: Path, cfg: VaeConfig, animation_included: bool,
                  schema_version: int, refinement_included: bool = False,
                  alpha_included: bool = False) -> tuple[Decoder, dict]:
    """Returns (the VAE decoder, the other tensors: the animation network's, when the manifest declares one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    expected = _expected_head_model(cfg, schema_version)
    stored = _stored_shapes(path / WEIGHTS)
    for k, v in expected.items():  # before any tensor is read: a manifest that lies costs nothing
        if k in stored and stored[k] != tuple(v.shape):
            raise AvatarPackageError(f"{path}: {WEIGHTS}: {k} has shape {stored[k]}, the manifest's "
                                     f"network config needs {tuple(v.shape)}")
    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AvatarPackageError(f"{path}: {WEIGHTS} is not a readable safetensors file ({exc})") from exc
    others = {k: v for k, v in tensors.items() if not k.startswith(VAE_PREFIXES)}
    tensors = {k: v for k, v in tensors.items() if k.startswith(VAE_PREFIXES)}
    undeclared = sorted(k for k in others if not (animation_included and k.startswith(ANIMATION_PREFIX))
                        and not (refinement_included and k.startswith(REFINE_PREFIX))
                        and not (alpha_included and k.startswith(ALPHA_PREFIX)))
    if undeclared:
        raise AvatarPackageError(f"{path}: {WEIGHTS} has tensors the manifest does not declare {undeclared[:4]}")
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    if missing:
        raise AvatarPackageError(f"{path}: {WEIGHTS} lacks tensors {missing[:4]}{'...' if len(missing) > 4 else ''}")
    if extra:
        why = (f" (schema {schema_version} packages leave the VAE encoder out)"
               if any(k.startswith(ENCODER_PREFIX) for k in extra) else "")
        raise AvatarPackageError(f"{path}: {WEIGHTS} has unexpected tensors {extra[:4]}{why}")
    for k, v in expected.items():
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise AvatarPackageError(f"{path}: {WEIGHTS}: {k} has shape {tuple(tensors[k].shape)}, the manifest's "
                                     f"network config needs {tuple(v.shape)}")
        if not torch.isfinite(tensors[k]).all():
            raise AvatarPackageError(f"{path}: {WEIGHTS}: {k} holds non-finite values")
    decoder = Decoder(cfg)
    n = len(DECODER_PREFIX)
    decoder.load_state_dict({k[n:]: t.float() for k, t in tensors.items() if k.startswith(DECODER_PREFIX)})
    return decoder.eval(), others


def _check_header(path: Path, raw: dict) -> None:
    """Schema 2: the weights' header names this schema and this manifest (schema 1 wrote neither)."""
    if raw["schema_version"] < 2:
        return
    header = read_weights_header(path / WEIGHTS)
    if header.get("schema") != SCHEMA_ID or header.get("schema_version") != str(raw["schema_version"]):
        raise AvatarPackageError(f"{path}: {WEIGHTS} header says schema {header.get('schema')!r} version "
                                 f"{header.get('schema_version')!r}, {MANIFEST} says {SCHEMA_ID!r} version "
                                 f"{raw['schema_version']}")
    digest = manifest_digest(raw)
    if header.get("manifest_sha256") != digest:
        raise AvatarPackageError(f"{path}: {MANIFEST} was changed after export: {WEIGHTS} was written for a "
                                 f"manifest whose sha256 is {str(header.get('manifest_sha256'))[:16]}…, this one's "
                                 f"is {digest[:16]}…")


def _check_animation_shapes(block: dict, tensors: dict) -> None:
    """The declared network's tensor shapes, built on the meta device (nothing allocated), against
    the stored ones — before `load_animation` builds the real network at the declared sizes."""
    from inference.animation.config import AnimationConfig
    from inference.animation.network import AnimationNet
    from inference.animation.serialize import PREFIX

    config = AnimationConfig.from_dict(block["config"])
    with torch.device("meta"):
        want = AnimationNet(int(block["feature_dim"]), int(block["z_dim"]), config).state_dict()
    n = sum(v.numel() for v in want.values())
    if n > LIMITS["parameters"]:
        raise ValueError(f"the declared animation network has {n} parameters, more than {LIMITS['parameters']}")
    for k, v in want.items():
        name = f"{PREFIX}net.{k}"
        if name in tensors and tuple(tensors[name].shape) != tuple(v.shape):
            raise ValueError(f"animation weight {name}: shape {tuple(tensors[name].shape)}, expected {tuple(v.shape)}")


def check_animation(block: dict, tensors: dict, feature_kind: str, z_dim: int) -> tuple:
    """Validates the ``anim.*`` tensors against the manifest's animation block, strictly: every
    tensor the declared network needs, with its shape and finite values, and no other ``anim.*``
    name. Returns (AnimationNet, FeatureNormalisation); raises ValueError naming the problem."""
    from inference.animation.kind_map import PREFIX as KINDMAP_PREFIX
    from inference.animation.serialize import TARGET_NEUTRAL, TARGET_NEUTRAL_SHAPE, animation_tensors, load_animation

    tensors = {k: v for k, v in tensors.items() if not k.startswith(KINDMAP_PREFIX)}  # load_kind_maps checks them
    if block.get("feature_kind") != feature_kind:
        raise ValueError(f"animation network was trained on {block.get('feature_kind')!r} features, "
                         f"the package's feature kind is {feature_kind!r}")
    if block.get("z_dim") != z_dim:
        raise ValueError(f"animation network outputs z of size {block.get('z_dim')}, the head model's is {z_dim}")
    if block.get("window") != block.get("config", {}).get("window"):
        raise ValueError(f"animation window {block.get('window')} disagrees with its config "
                         f"({block.get('config', {}).get('window')})")
    dim = block.get("feature_dim")
    for k in ("anim.norm.mean", "anim.norm.std"):  # named here: the normalisation's own check is anonymous
        if k in tensors and tuple(tensors[k].shape) != (dim,):
            raise ValueError(f"animation tensor {k}: shape {tuple(tensors[k].shape)}, expected ({dim},)")
    _check_animation_shapes(block, tensors)
    net, norm = load_animation(tensors, block)
    expected = animation_tensors(net, norm)
    if TARGET_NEUTRAL in tensors:  # optional: the target's relaxed face
        neutral = tensors[TARGET_NEUTRAL]
        if tuple(neutral.shape) != TARGET_NEUTRAL_SHAPE:
            raise ValueError(f"animation tensor {TARGET_NEUTRAL}: shape {tuple(neutral.shape)}, expected {TARGET_NEUTRAL_SHAPE}")
        if not torch.isfinite(neutral).all():
            raise ValueError(f"animation tensor {TARGET_NEUTRAL} holds non-finite values")
        expected[TARGET_NEUTRAL] = neutral
    extra = sorted(set(tensors) - set(expected))
    if extra:
        raise ValueError(f"unexpected animation tensors {extra[:4]}")
    for k, v in expected.items():  # the normalisation statistics: load_animation checks values, not shapes
        if tuple(tensors[k].shape) != tuple(v.shape):
            raise ValueError(f"animation tensor {k}: shape {tuple(tensors[k].shape)}, expected {tuple(v.shape)}")
    return net, norm


def load_package(path: Path) -> AvatarPackage:
    raw = _read_manifest(path)
    _check_files(path, raw)
    manifest = Manifest(raw)
    hm = raw["head_model"]
    cfg = manifest.vae
    if cfg.z_dim != hm["z_dim"] or cfg.texture_size != hm["texture_size"] or cfg.n_weights != hm["n_blendshapes"]:
        raise AvatarPackageError(f"{path}: head_model sizes disagree with its vae config")
    decoder, extra_tensors = _load_weights(path, cfg, manifest.animation_included, manifest.schema_version,
                                           refinement_included=manifest.refinement_included,
                                           alpha_included=manifest.alpha_included)
    alpha = None
    if manifest.alpha_included:
        from inference.head_model.alpha_atlas import check_alpha

        try:
            alpha = check_alpha(raw["alpha"], extra_tensors, cfg.texture_size)
        except (ValueError, TypeError, KeyError) as exc:
            raise AvatarPackageError(f"{path}: {WEIGHTS} / alpha: {exc}") from exc
    animation = None
    if manifest.animation_included:
        try:
            anim_tensors = {k: v for k, v in extra_tensors.items() if not k.startswith((REFINE_PREFIX, ALPHA_PREFIX))}
            animation = check_animation(raw["animation"], anim_tensors, manifest.feature_kind, manifest.z_dim)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise AvatarPackageError(f"{path}: {WEIGHTS} / animation network: {exc}") from exc
    kind_maps = {}
    if animation is not None:
        from inference.animation.kind_map import load_kind_maps

        try:
            kind_maps = load_kind_maps(raw.get("feature_maps"), extra_tensors, animation[0].feature_dim)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise AvatarPackageError(f"{path}: {WEIGHTS} / feature_maps: {exc}") from exc
    declared = raw.get("feature_kinds")
    # (A package without an animation network drives nothing: its feature_kinds are moot.)
    if declared is not None and animation is not None and sorted(declared) != sorted([manifest.feature_kind, *kind_maps]):
        raise AvatarPackageError(f"{path}: feature_kinds {declared} disagree with the network's kind "
                                 f"{manifest.feature_kind!r} and the mapped kinds {sorted(kind_maps)}")
    try:
        mesh = read_glb(path / MESH)
    except GltfError as exc:
        raise AvatarPackageError(f"{path}: {exc}") from exc
    if len(mesh.positions) != hm["n_vertices"] or len(mesh.indices) != hm["n_triangles"]:
        raise AvatarPackageError(f"{path}: {MESH} has {len(mesh.positions)} vertices / {len(mesh.indices)} "
                                 f"triangles, manifest says {hm['n_vertices']} / {hm['n_triangles']}")
    if mesh.blendshapes.shape[0] != hm["n_blendshapes"]:
        raise AvatarPackageError(f"{path}: {MESH} has {mesh.blendshapes.shape[0]} morph targets, manifest says "
                                 f"{hm['n_blendshapes']} blendshapes")
    torso_declared = bool(raw.get("torso", {}).get("included"))
    if torso_declared != (mesh.torso is not None) or (mesh.torso is not None) != (mesh.body_weight is not None):
        raise AvatarPackageError(f"{path}: the manifest says torso.included = {torso_declared}, but {MESH} "
                                 f"{'has' if mesh.torso is not None else 'has no'} torso and "
                                 f"{'a' if mesh.body_weight is not None else 'no'} neck skin")
    _check_header(path, raw)
    refinement = None
    if manifest.refinement_included:
        from inference.head_model.refinement import check_refinement

        try:
            refinement = check_refinement(raw["refinement"], extra_tensors)
        except (ValueError, TypeError, KeyError, RuntimeError) as exc:
            raise AvatarPackageError(f"{path}: {WEIGHTS} / refinement network: {exc}") from exc
    return AvatarPackage(path, manifest, mesh, RuntimeDecoder(decoder, alpha), extra_tensors, animation,
                         refinement=refinement, kind_maps=kind_maps, alpha=alpha)


def check_replaceable(out: Path) -> None:
    """The export replaces ``out`` wholesale, so it may be only: absent, an empty directory, or a
    Headcast avatar package holding nothing but a package's files (its manifest names this schema).
    A directory with an ``avatar.json`` beside the user's own files used to be deleted whole (issue
    11: ``{}`` next to notes.txt and photos/); now anything else is refused, naming what is there."""
    out = Path(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise AvatarPackageError(f"{out}: exists and is not a directory; refusing to replace it")
    if not out.exists():
        return
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    foreign = [e for e in entries if e not in (MANIFEST, *PAYLOAD)]
    if foreign:
        shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
        raise AvatarPackageError(f"{out}: holds files that are not an avatar package's ({shown}); refusing to "
                                 "replace it (choose a new --out, or move them away)")
    try:
        manifest = load_strict(out / MANIFEST, str(out / MANIFEST), max_bytes=MANIFEST_MAX_BYTES) \
            if (out / MANIFEST).is_file() and not (out / MANIFEST).is_symlink() else None
    except StrictJsonError:
        manifest = None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA_ID:
        raise AvatarPackageError(f"{out}: is not a Headcast avatar package (its {MANIFEST} is missing or does not "
                                 f"say schema {SCHEMA_ID!r}); refusing to replace it (choose a new --out)")
    for name in entries:
        if not (out / name).is_file() or (out / name).is_symlink():
            raise AvatarPackageError(f"{out}: {name} is not a regular file; refusing to replace the directory")


def _remove_stale(out: Path) -> None:
    """Temporary/old directories left by an export that was killed (its process is gone)."""
    for kind in ("tmp", "old"):
        for d in out.parent.glob(f".{out.name}.{kind}-*"):
            pid = d.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
                shutil.rmtree(d, ignore_errors=True)


def write_package(out: Path, manifest: dict, decoder: Decoder, mesh: MeshArrays, neutral_texture_rgb: np.ndarray,
                  preview_png: bytes, before_commit: Callable[[Path], None] | None = None,
                  extra_tensors: dict | None = None) -> Path:
    """Atomically writes the package to ``out`` (replacing an existing one) in the current schema:
    ``decoder`` is the head model's VAE decoder (the encoder never enters a package). The writer
    owns ``schema_version``, the ``weights`` block and the ``files`` checksums of the manifest.
    ``extra_tensors`` are merged into weights.safetensors (the animation network's ``anim.*``; the
    manifest's ``animation.included`` must then be true). ``before_commit`` runs after all files are
    in the temporary directory, just before the rename (tests use it to interrupt an export at its
    most dangerous point)."""
    import jsonschema
    from safetensors.torch import save as safetensors_bytes

    out = Path(out).absolute()
    check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(out)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        included = bool(manifest.get("animation", {}).get("included"))
        refine = bool(manifest.get("refinement", {}).get("included"))
        with_alpha = bool(manifest.get("alpha", {}).get("included"))
        manifest = {k: v for k, v in manifest.items() if k != "files"}
        manifest.update(schema=SCHEMA_ID, schema_version=SCHEMA_VERSION,
                        weights=weights_block(included, refine, with_alpha))
        tensors = {DECODER_PREFIX + k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
        for k, v in (extra_tensors or {}).items():
            if (refine and k.startswith(REFINE_PREFIX)) or (with_alpha and k.startswith(ALPHA_PREFIX)):
                tensors[k] = v.detach().cpu().contiguous()
                continue
            if k.startswith(VAE_PREFIXES) or not k.startswith(ANIMATION_PREFIX):
                raise ValueError(f"extra tensor {k!r}: only {ANIMATION_PREFIX}* names may join the head model's")
            if not included:
                raise ValueError("extra animation tensors need animation.included = true in the manifest")
            tensors[k] = v.detach().cpu().contiguous()
        if refine:
            from inference.head_model.refinement import check_refinement

            check_refinement(manifest["refinement"], {k: v for k, v in tensors.items() if k.startswith(REFINE_PREFIX)})
        if with_alpha:
            from inference.head_model.alpha_atlas import check_alpha

            check_alpha(manifest["alpha"], tensors, manifest["head_model"]["texture_size"])
        if included:
            anim = {k: v for k, v in tensors.items() if k.startswith(ANIMATION_PREFIX)}
            check_animation(manifest["animation"], anim, manifest["feature"]["kind"], manifest["head_model"]["z_dim"])
        atomic_write_bytes(tmp / WEIGHTS, safetensors_bytes(tensors, metadata=weights_header(manifest)),
                           mode=FILE_MODE)
        write_glb(tmp / MESH, mesh, neutral_texture_rgb, mode=FILE_MODE)
        atomic_write_bytes(tmp / PREVIEW, preview_png, mode=FILE_MODE)
        manifest["files"] = {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                             for name in PAYLOAD}
        jsonschema.validate(manifest, MANIFEST_SCHEMA)  # never write a package we would refuse to load
        atomic_write_json(tmp / MANIFEST, manifest, indent=2, mode=FILE_MODE)
        if before_commit is not None:
            before_commit(tmp)
        old = None
        if out.exists():
            check_replaceable(out)  # again: the directory may have changed during the build
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        fsync_dir(out.parent)
        if old is not None:
            # Only the package's own files: whatever else appeared there in the meantime survives.
            for name in (MANIFEST, *PAYLOAD):
                (old / name).unlink(missing_ok=True)
            try:
                old.rmdir()
            except OSError:
                log.warning("%s: left %s in place (it held files that are not the package's)", out, old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
