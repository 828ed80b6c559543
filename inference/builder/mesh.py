"""Stage ``mesh``: the personal whole-head mesh and its UV atlas, from the neutral."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.frame_selection import expression_scores
from inference.head_model.head_closure import ClosureConfig
from inference.head_model.head_mesh import WHOLE_HEAD_LAYOUT, AtlasLayout, HeadMesh, build_head_mesh
from inference.head_model.head_shell import HeadShell

from .cache import StageCache, builder_stage_key
from .select import SelectedFrames


@dataclass(frozen=True)
class MeshInput:
    selection: SelectedFrames
    closure: ClosureConfig
    shell: HeadShell | None = None  # the carved head shell (whole_head stage); None: procedural skull
    shell_key: str = ""  # the whole_head stage's key when a shell is used


@dataclass(frozen=True, eq=False)
class PersonalMesh:
    key: str
    mesh: HeadMesh


def build_mesh(cache: StageCache, inp: MeshInput) -> PersonalMesh:
    sel = inp.selection
    # Without a shell the key is today's (work directories of builder 7 stay valid).
    upstream = [sel.key] + ([inp.shell_key] if inp.shell is not None else [])
    closure = {k: v for k, v in asdict(inp.closure).items() if not (k == "blend_power" and v is None)}
    key = builder_stage_key("mesh", {"closure": closure}, upstream)
    layout = WHOLE_HEAD_LAYOUT if inp.shell is not None else AtlasLayout()

    def run(d: Path) -> dict:
        canon, train, neutral = sel.canonical, sel.train, sel.neutral
        mouth, _ = expression_scores(canon[train])
        open_shape = canon[train[mouth >= np.quantile(mouth, 0.9)]].mean(0)
        # UV/triangulation shape: mouth opened part-way, so the mouth interior gets texels.
        mesh = build_head_mesh(neutral, neutral + 0.6 * (open_shape - neutral), inp.closure, layout,
                               inp.shell.radius if inp.shell is not None else None)
        save_np({"atlas_split": np.array([mesh.atlas_split], np.float64),
                 "positions": mesh.positions, "uvs": mesh.uvs, "faces": mesh.faces.astype(np.int64),
                 "face_map": mesh.face_map, "neutral_face": mesh.neutral_face,
                 "n_face_triangles": np.array([mesh.n_face_triangles], np.int64)}, str(d / "mesh.safetensors"))
        return {"vertices": int(len(mesh.positions)), "triangles": int(len(mesh.faces))}

    cache.run("mesh", key, run)
    m = load_np(str(cache.work / "mesh" / "mesh.safetensors"))
    return PersonalMesh(key, HeadMesh(m["positions"], m["uvs"], m["faces"], m["face_map"], m["neutral_face"],
                                      int(m["n_face_triangles"][0]),
                                      float(m["atlas_split"][0]) if "atlas_split" in m else AtlasLayout().split))
