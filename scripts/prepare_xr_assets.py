"""Real assets for the OpenXR tests, made on the host before they run inside the Monado root
(which has neither the sample clips nor MediaPipe's heavy start-up to spare): a --quick avatar of
the sample woman and a recording of the sample man's stream made by the real capture node.
Idempotent: existing valid assets are kept. Usage: python scripts/prepare_xr_assets.py DIR"""
from __future__ import annotations

import sys
from pathlib import Path

from tools import cli, samples


def main(out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    avatar = out / "quick-avatar"
    if not (avatar / "avatar.json").is_file():
        rc = cli.main(["build-avatar", "--video", str(samples.sample_path(samples.AVATAR_CLIP)), "--out", str(avatar),
                       "--quick", "--work", str(out / "quick-avatar.work")])
        if rc != 0:
            return rc
    recording = out / "man.hcrec"
    if not recording.is_file():
        part = out / "man.hcrec.part"
        part.unlink(missing_ok=True)
        # Real-time pacing so the recording has a live session's timing (replay keeps it). Nobody
        # listens on this endpoint: PUB drops what it sends, the recording keeps every frame.
        rc = cli.main(["capture", "--source", str(samples.sample_path(samples.DRIVER_CLIP)), "--connect",
                       "tcp://127.0.0.1:9", "--stream", "man", "--clock", "off", "--realtime", "--record", str(part)])
        if rc != 0:
            return rc
        part.rename(recording)
    print(f"XR test assets ready in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".xr-assets")))
