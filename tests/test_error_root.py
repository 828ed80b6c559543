"""One error root (issue 10): every exception class Headcast defines derives from `HeadcastError`,
so the CLI's one `except HeadcastError` turns each into a message instead of a traceback. Found by
reading the source (no imports: GPU and GL modules stay unloaded)."""
from __future__ import annotations

import ast
import builtins
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROOMS = ("capture", "calibration", "core", "geometry", "inference", "media", "room", "streaming", "tools",
         "xr_runtime")
BUILTIN_ERRORS = {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}


def _classes() -> dict[str, list[tuple[str, list[str]]]]:
    """class name → [(where, base names)] for every class in the package's rooms (a name defined
    twice keeps both definitions: each is checked)."""
    found: dict[str, list[tuple[str, list[str]]]] = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                    found.setdefault(node.name, []).append((f"{path.relative_to(ROOT)}:{node.lineno}", bases))
    return found


def test_every_exception_class_derives_from_headcast_error():
    classes = _classes()

    def reaches(bases: list[str], targets: set[str], seen: frozenset = frozenset()) -> bool:
        """Whether a class with these bases derives from one of `targets` (through the package's own classes)."""
        return any(b in targets or (b in classes and b not in seen
                                    and any(reaches(inner, targets, seen | {b}) for _, inner in classes[b]))
                   for b in bases)

    errors = [(name, where, bases) for name, defs in classes.items() for where, bases in defs
              if reaches(bases, BUILTIN_ERRORS)]
    assert "HeadcastError" in {n for n, _, _ in errors} and len(errors) > 10, errors  # the scan sees the errors
    strays = sorted(f"{where} {name}({', '.join(bases)})" for name, where, bases in errors
                    if name != "HeadcastError" and not reaches(bases, {"HeadcastError"}))
    assert strays == [], strays
