"""Scene files: JSON, schema-checked; where the avatars stand and what surrounds them.

A scene holds an environment (the built-in room or a glTF 2.0 file), avatar slots (package
directory, the stream id that drives it, transform, scale) and the viewer's start pose. Placements
changed at run time are saved back atomically, so a crash never leaves a half-written scene.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from core.atomic_files import atomic_write_json
from core.errors import HeadcastError

SCENE_VERSION = 1

_VEC3 = {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3}
_QUAT = {"type": "array", "items": {"type": "number"}, "minItems": 4, "maxItems": 4}
SCENE_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["version", "avatars"],
    "additionalProperties": False,
    "properties": {
        "version": {"const": SCENE_VERSION},
        "name": {"type": "string"},
        "environment": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "kind": {"enum": ["room", "gltf", "empty"]},
                "path": {"type": "string"},
                "scale": {"type": "number", "exclusiveMinimum": 0},
            },
        },
        "avatars": {
            "type": "array",
            "maxItems": 64,
            "items": {
                "type": "object",
                "required": ["package", "stream"],
                "additionalProperties": False,
                "properties": {
                    "package": {"type": "string", "minLength": 1},
                    "stream": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,32}$"},
                    "position": _VEC3,
                    "rotation": _QUAT,
                    "scale": {"type": "number", "exclusiveMinimum": 0, "maximum": 100},
                },
            },
        },
        "viewer": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"position": _VEC3, "rotation": _QUAT},
        },
    },
}


class SceneError(HeadcastError, ValueError):
    pass


@dataclass
class Transform:
    position: tuple[float, float, float] = (0.0, 1.6, -1.0)
    rotation: tuple[float, float, float, float] = (1.0, 0.0, 0.0, 0.0)  # w, x, y, z
    scale: float = 1.0


@dataclass
class AvatarSlot:
    package: Path
    stream: str
    transform: Transform = field(default_factory=Transform)


@dataclass
class Environment:
    kind: str = "room"
    path: Path | None = None
    scale: float = 1.0


@dataclass
class Scene:
    avatars: list[AvatarSlot]
    environment: Environment = field(default_factory=Environment)
    viewer: Transform = field(default_factory=lambda: Transform(position=(0.0, 1.6, 0.0)))
    name: str = "scene"

    # -- I/O -------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> "Scene":
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SceneError(f"scene file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise SceneError(f"scene file {path} is not valid JSON: {exc}") from None
        return cls.from_dict(data, base_dir=path.parent)

    @classmethod
    def from_dict(cls, data: dict, base_dir: Path = Path(".")) -> "Scene":
        validator = jsonschema.Draft202012Validator(SCENE_SCHEMA)
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            e = errors[0]
            where = "/".join(str(p) for p in e.path) or "(top level)"
            raise SceneError(f"scene invalid at {where}: {e.message}")
        env = data.get("environment", {})
        environment = Environment(
            kind=env.get("kind", "room"),
            path=(base_dir / env["path"]) if env.get("path") else None,
            scale=env.get("scale", 1.0),
        )
        if environment.kind == "gltf" and environment.path is None:
            raise SceneError("environment kind 'gltf' needs a path")
        slots = []
        seen = set()
        for a in data["avatars"]:
            if a["stream"] in seen:
                raise SceneError(f"stream {a['stream']!r} drives two avatar slots")
            seen.add(a["stream"])
            slots.append(AvatarSlot(
                package=base_dir / a["package"],
                stream=a["stream"],
                transform=Transform(tuple(a.get("position", (0.0, 1.6, -1.0))), tuple(a.get("rotation", (1.0, 0.0, 0.0, 0.0))),
                                    a.get("scale", 1.0)),
            ))
        v = data.get("viewer", {})
        viewer = Transform(tuple(v.get("position", (0.0, 1.6, 0.0))), tuple(v.get("rotation", (1.0, 0.0, 0.0, 0.0))))
        return cls(slots, environment, viewer, data.get("name", "scene"))

    def to_dict(self, base_dir: Path | None = None) -> dict:
        def rel(p: Path) -> str:
            if base_dir is not None:
                try:
                    return os.path.relpath(p, base_dir)
                except ValueError:
                    pass
            return str(p)

        env: dict = {"kind": self.environment.kind, "scale": self.environment.scale}
        if self.environment.path is not None:
            env["path"] = rel(self.environment.path)
        return {
            "version": SCENE_VERSION,
            "name": self.name,
            "environment": env,
            "avatars": [{"package": rel(a.package), "stream": a.stream, "position": list(a.transform.position),
                         "rotation": list(a.transform.rotation), "scale": a.transform.scale} for a in self.avatars],
            "viewer": {"position": list(self.viewer.position), "rotation": list(self.viewer.rotation)},
        }

    def save(self, path: Path) -> None:
        """Atomic (core.atomic_files): readers see the old scene or the new one; the file keeps its mode."""
        path = Path(path)
        data = self.to_dict(base_dir=path.parent.resolve())
        jsonschema.validate(data, SCENE_SCHEMA)
        atomic_write_json(path, data)


def single_avatar_scene(package: Path, stream: str) -> Scene:
    """What `headcast render --avatar DIR` uses: one avatar facing the viewer at 1 m."""
    return Scene([AvatarSlot(Path(package), stream, Transform(position=(0.0, 1.6, -1.0)))])


__all__ = ["Scene", "AvatarSlot", "Transform", "Environment", "SceneError", "SCENE_SCHEMA", "single_avatar_scene"]
