"""One real `--quick` avatar build shared by the avatar test modules (built once per session:
the builder's stage cache makes a second request a cheap re-export)."""
from __future__ import annotations

from pathlib import Path

from tools import cli
from tools.samples import sample_path

WOMAN = "WolfgangLanger_Pexels.mp4"


def quick_build(base: Path) -> Path:
    out = base / "quick-avatar"
    if (out / "avatar.json").is_file():
        return out
    rc = cli.main(["build-avatar", "--video", str(sample_path(WOMAN)), "--out", str(out), "--quick",
                   "--work", str(base / "quick-avatar.work")])
    assert rc == 0, "quick avatar build failed"
    return out
