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
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from core.atomic_files import atomic_write_bytes, atomic_write_json, fsync_dir, pid_alive, sha256_file
from core.errors import HeadcastError
from inference.head_model.gltf_io import GltfError, MeshArrays, read_glb, write_glb
from inference.head_model.vae import Decoder, HeadVae, RuntimeDecoder, VaeConfig

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
# What each prefix of weights.safetensors is, as the manifest's ``weights`` block and the file's
# header say it.
HOLDS = {
    DECODER_PREFIX: "head model VAE decoder: z -> dynamic texture (RGB atlas) + blendshape weights; "
                    "what the render node runs every frame",
    ANIMATION_PREFIX: "animation network: expression features (a window of frames) -> z; with its feature "
                      "normalisation and the target's relaxed face",
}
NOT_INCLUDED = {
    ENCODER_PREFIX: "head model VAE encoder (texture + blendshape weights -> z): used only while building "
                    "(the animation network's training targets, held-out scores); kept in the build's work "
                    "directory, vae/vae.safetensors",
}

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
            "feature_dim": _INT1, "z_dim": _INT1, "window": _INT1, "parameters": _INT1,
            "config": {"type": "object", "required": ["arch", "window", "hidden", "layers", "pca_dim", "input_proj"],
                       "properties": {"arch": {"enum": ["lstm", "mlp"]}, "window": _INT1, "hidden": _INT1,
                                      "layers": _INT1}},
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
                              "bytes": {"type": "integer", "minimum": 1}}}
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
                "z_dim": {"type": "integer", "minimum": 1},
                "texture_size": {"type": "integer", "minimum": 8},
                "texture_format": {"const": "RGBA8"},
                "n_blendshapes": {"type": "integer", "minimum": 1},
                "n_vertices": {"type": "integer", "minimum": 3},
                "n_triangles": {"type": "integer", "minimum": 1},
                "units": {"const": "m"},
                "canonical_unit_m": {"type": "number", "exclusiveMinimum": 0},
                "vae": {"type": "object", "required": ["texture_size", "n_weights", "z_dim", "hidden", "basis_size",
                                                       "n_basis"]},
            }},
        "animation": _ANIMATION,
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


def weights_block(animation_included: bool) -> dict:
    """The manifest's ``weights`` block: what weights.safetensors holds, by tensor-name prefix."""
    holds = {k: v for k, v in HOLDS.items() if animation_included or k != ANIMATION_PREFIX}
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

    @property
    def vae_decoder(self) -> Decoder:
        """The VAE decoder as a batched module: z (B, Z) → (texture (B, 3, S, S) float, weights (B, K))."""
        return self.decoder.decoder

    @staticmethod
    def load(path: str | Path) -> "AvatarPackage":
        return load_package(Path(path))


def _read_manifest(path: Path) -> dict:
    import jsonschema

    if not path.is_dir():
        raise AvatarPackageError(f"{path}: no such avatar package directory")
    mf = path / MANIFEST
    if not mf.is_file():
        raise AvatarPackageError(f"{path}: {MANIFEST} is missing (incomplete or interrupted export?)")
    try:
        raw = json.loads(mf.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AvatarPackageError(f"{mf}: not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise AvatarPackageError(f"{mf}: top level must be an object")
    if raw.get("schema") == SCHEMA_ID and raw.get("schema_version") not in READABLE_VERSIONS:
        raise AvatarPackageError(f"{mf}: schema_version {raw.get('schema_version')!r} is not supported "
                                 f"(this build reads versions {', '.join(map(str, READABLE_VERSIONS))})")
    try:
        jsonschema.validate(raw, MANIFEST_SCHEMA)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top level)"
        raise AvatarPackageError(f"{mf}: schema violation at {where}: {exc.message}") from exc
    return raw


def _check_files(path: Path, raw: dict) -> None:
    for name in PAYLOAD:
        entry = raw["files"][name]
        f = path / name
        if not f.is_file():
            raise AvatarPackageError(f"{path}: {name} is missing")
        size = f.stat().st_size
        if size != entry["bytes"]:
            what = "truncated" if size < entry["bytes"] else "larger than recorded"
            raise AvatarPackageError(f"{path}: {name} is {what}: {size} bytes, manifest says {entry['bytes']}")
        if sha256_file(f) != entry["sha256"]:
            raise AvatarPackageError(f"{path}: {name} sha256 does not match the manifest (file was modified)")


VAE_PREFIXES = (ENCODER_PREFIX, DECODER_PREFIX)


def _expected_head_model(cfg: VaeConfig, schema_version: int) -> dict[str, torch.Tensor]:
    """Name → tensor of the right shape for the head model's part of the weights: the decoder
    (schema 2), or the whole VAE (schema 1: the encoder too)."""
    if schema_version == 1:
        return HeadVae(cfg).state_dict()
    return {DECODER_PREFIX + k: v for k, v in Decoder(cfg).state_dict().items()}


def _load_weights(path: Path, cfg: VaeConfig, animation_included: bool,
                  schema_version: int) -> tuple[Decoder, dict]:
    """Returns (the VAE decoder, the other tensors: the animation network's, when the manifest declares one)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        tensors = load_file(str(path / WEIGHTS))
    except (SafetensorError, OSError, ValueError) as exc:
        raise AvatarPackageError(f"{path}: {WEIGHTS} is not a readable safetensors file ({exc})") from exc
    expected = _expected_head_model(cfg, schema_version)
    others = {k: v for k, v in tensors.items() if not k.startswith(VAE_PREFIXES)}
    tensors = {k: v for k, v in tensors.items() if k.startswith(VAE_PREFIXES)}
    undeclared = sorted(k for k in others if not (animation_included and k.startswith(ANIMATION_PREFIX)))
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


def check_animation(block: dict, tensors: dict, feature_kind: str, z_dim: int) -> tuple:
    """Validates the ``anim.*`` tensors against the manifest's animation block, strictly: every
    tensor the declared network needs, with its shape and finite values, and no other ``anim.*``
    name. Returns (AnimationNet, FeatureNormalisation); raises ValueError naming the problem."""
    from inference.animation.serialize import TARGET_NEUTRAL, TARGET_NEUTRAL_SHAPE, animation_tensors, load_animation

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
    decoder, extra_tensors = _load_weights(path, cfg, manifest.animation_included, manifest.schema_version)
    animation = None
    if manifest.animation_included:
        try:
            animation = check_animation(raw["animation"], extra_tensors, manifest.feature_kind, manifest.z_dim)
        except ValueError as exc:
            raise AvatarPackageError(f"{path}: {WEIGHTS} / animation network: {exc}") from exc
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
    _check_header(path, raw)
    return AvatarPackage(path, manifest, mesh, RuntimeDecoder(decoder), extra_tensors, animation)


def check_replaceable(out: Path) -> None:
    """The export replaces ``out`` wholesale: refuse anything but an absent or empty directory or a
    previous avatar package, so a mistyped --out never deletes unrelated files."""
    if out.is_file() or out.is_symlink():
        raise AvatarPackageError(f"{out}: exists and is not a directory; refusing to replace it")
    if out.is_dir() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise AvatarPackageError(f"{out}: is a non-empty directory that is not an avatar package; "
                                 "refusing to replace it (choose a new --out)")


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
        manifest = {k: v for k, v in manifest.items() if k != "files"}
        manifest.update(schema=SCHEMA_ID, schema_version=SCHEMA_VERSION, weights=weights_block(included))
        tensors = {DECODER_PREFIX + k: v.detach().cpu().contiguous() for k, v in decoder.state_dict().items()}
        for k, v in (extra_tensors or {}).items():
            if k.startswith(VAE_PREFIXES) or not k.startswith(ANIMATION_PREFIX):
                raise ValueError(f"extra tensor {k!r}: only {ANIMATION_PREFIX}* names may join the head model's")
            if not included:
                raise ValueError("extra animation tensors need animation.included = true in the manifest")
            tensors[k] = v.detach().cpu().contiguous()
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
            old = out.parent / f".{out.name}.old-{os.getpid()}"
            os.replace(out, old)
        os.replace(tmp, out)
        fsync_dir(out.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out
