"""JSON the user gives us (scenes, avatar manifests, glTF documents), read strictly.

    data = loads_strict(text, what="scene file room.json")          # or load_strict(path, what)
    validate_strict(data, SCHEMA, what="scene file room.json")       # JSON Schema, integers are ints

Python's `json` accepts more than JSON and fails in ways no caller expected (issue 11):

* ``NaN``, ``Infinity`` and numbers like ``1e400`` (which parse to infinity) are refused: a NaN
  position made an avatar silently disappear, an infinite scale took the environment with it.
* Nesting deeper than `MAX_DEPTH` is refused before it reaches a recursive walk; ``[[[[...]]]]``
  100 000 deep was a RecursionError traceback.
* Files are size-capped before they are read (`max_bytes`).
* In `validate_strict`, ``"integer"`` means a JSON integer: ``256.0`` or ``true`` are not sizes
  (jsonschema's default lets both through, and they failed later as TypeErrors). The first
  violation is reported with its path and a message that never repeats a long instance.

Every failure is a `StrictJsonError` (a `HeadcastError`), whose message names `what`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from core.errors import HeadcastError

MAX_DEPTH = 64
MAX_JSON_BYTES = 16 << 20


class StrictJsonError(HeadcastError, ValueError):
    """A JSON document is unreadable, not strict JSON, too deep or too large, or violates its schema."""


def _constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, iteratively (a recursive walk is what we are guarding against)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, d = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def loads_strict(text: str | bytes, what: str = "JSON document", max_depth: int = MAX_DEPTH) -> Any:
    try:
        data = json.loads(text, parse_constant=_constant, parse_float=_finite_float)
    except RecursionError:
        raise StrictJsonError(f"{what}: nested too deeply") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise StrictJsonError(f"{what}: not valid JSON ({str(exc)[:200]})") from None
    if _depth(data, max_depth) > max_depth:
        raise StrictJsonError(f"{what}: nested deeper than {max_depth} levels")
    return data


def load_strict(path: Path, what: str | None = None, max_bytes: int = MAX_JSON_BYTES,
                max_depth: int = MAX_DEPTH) -> Any:
    path = Path(path)
    what = what or str(path)
    try:
        if not path.is_file():
            raise StrictJsonError(f"{what}: does not exist" if not path.exists() else f"{what}: is not a regular file")
        size = path.stat().st_size
        if size > max_bytes:
            raise StrictJsonError(f"{what}: {size} bytes, more than the {max_bytes} a JSON file here may have")
        raw = path.read_bytes()
    except OSError as exc:
        raise StrictJsonError(f"{what}: cannot be read ({exc.strerror or exc})") from None
    return loads_strict(raw, what, max_depth)


def _strict_validator_class():
    import jsonschema
    from jsonschema import validators

    base = jsonschema.Draft202012Validator
    checker = base.TYPE_CHECKER.redefine_many({
        "integer": lambda _, x: isinstance(x, int) and not isinstance(x, bool),
        "number": lambda _, x: isinstance(x, (int, float)) and not isinstance(x, bool),
    })
    return validators.extend(base, type_checker=checker)


_VALIDATOR = None


def schema_errors(data: Any, schema: dict) -> list:
    """Every violation of `schema` (integers strict), sorted by path."""
    global _VALIDATOR
    if _VALIDATOR is None:
        _VALIDATOR = _strict_validator_class()
    return sorted(_VALIDATOR(schema).iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])


def describe(error) -> str:
    """One violation as 'at PATH: MESSAGE', the message cut short (jsonschema quotes whole instances)."""
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message
    if len(message) > 160:
        message = {"maxItems": f"has more than {error.validator_value} items",
                   "minItems": f"has fewer than {error.validator_value} items",
                   "maxLength": f"is longer than {error.validator_value} characters",
                   "additionalProperties": "has properties the schema does not allow"}.get(
            error.validator, message[:157] + "...")
    return f"at {where}: {message}"


def validate_strict(data: Any, schema: dict, what: str = "JSON document") -> None:
    errors = schema_errors(data, schema)
    if errors:
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise StrictJsonError(f"{what}: schema violation {describe(errors[0])}{more}")


__all__ = ["MAX_DEPTH", "StrictJsonError", "describe", "load_strict", "loads_strict", "schema_errors",
           "validate_strict"]
