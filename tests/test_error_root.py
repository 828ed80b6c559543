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


def _classes() -> dict[str, tuple[str, list[str]]]:
    """class name → (where, base names) for every class in the package's rooms."""
    found = {}
    for room in ROOMS:
        for path in (ROOT / room).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ClassDef):
                    bases = [b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in node.bases]
                    found[node.name] = (f"{path.relative_to(ROOT)}:{node.lineno}", bases)
    return found


def test_every_exception_class_derives_from_headcast_error():
    classes = _classes()

    def rooted(name: str, seen: frozenset = frozenset()) -> bool:
        if name == "HeadcastError":
            return True
        if name not in classes or name in seen:
            return False
        return any(rooted(b, seen | {name}) for b in classes[name][1])

    def is_error(name: str, seen: frozenset = frozenset()) -> bool:
        if name in BUILTIN_ERRORS:
            return True
        if name not in classes or name in seen:
            return False
        return any(is_error(b, seen | {name}) for b in classes[name][1])

    errors = [n for n in classes if is_error(n)]
    assert "HeadcastError" in errors and len(errors) > 10, errors  # the scan sees the package's errors
    strays = sorted(f"{classes[n][0]} {n}({', '.join(classes[n][1])})" for n in errors if not rooted(n))
    assert strays == [], strays
