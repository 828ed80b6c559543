"""The stages' progress bars (stderr; the per-stage summary lines go to the build's log): one look
with every other long step (core/progress). A stage's own bar sits under the build's bar over
all stages (`build_avatar`)."""
from __future__ import annotations

from tqdm import tqdm

from core.progress import progress_bar

STAGES = 11         # track, select, whole_head, mesh, basis, textures, vae, evaluate, refine, animation, export


def progress(total: int, desc: str, unit: str = "f") -> tqdm:
    """A stage's progress bar on stderr; redrawn at most every 2 s when stderr is a log file."""
    return progress_bar(total=total, desc=desc, unit=unit, position=1)


def stages_bar() -> tqdm:
    """The bar over the build's stages: what a first `make demo` waits on while the default avatar is built."""
    return progress_bar(total=STAGES, desc="avatar", unit="stage", position=0)
