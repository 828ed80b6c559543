"""Stage ``alpha``: the whole head's soft outline, learned from the training frames' head mattes
(inference/head_model/alpha_atlas.py). No video is decoded: the mattes (whole_head stage) and the
tracked poses are all it needs, so it costs about a second on the quick build."""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from inference.head_model.alpha_atlas import AlphaAccumulator, AlphaConfig, alpha_stats
from inference.head_model.matte import above_chin_at
from inference.head_model.texture_unwrap import UnwrapConfig, texel_projection, triangle_normals
from inference.head_model.uv_atlas import texel_table

from .cache import StageCache, builder_stage_key
from .mesh import PersonalMesh
from .select import SelectedFrames
from .track import Tracks
from .whole_head import WholeHead


@dataclass(frozen=True, eq=False)
class AlphaInput:
    tracks: Tracks
    selection: SelectedFrames
    mesh: PersonalMesh
    whole: WholeHead
    res: int
    unwrap: UnwrapConfig
    config: AlphaConfig


@dataclass(frozen=True, eq=False)
class LearnedAlpha:
    key: str
    info: dict
    atlas: np.ndarray | None  # (S, S) uint8 edge-on alpha; None: no whole head, the atlas is opaque


def learn_alpha(cache: StageCache, inp: AlphaInput) -> LearnedAlpha:
    cfg, whole = inp.config, inp.whole
    if not cfg.enabled or whole.shell is None or whole.mattes is None:
        reason = "off" if not cfg.enabled else "no head shell (face-and-skull model)"
        return LearnedAlpha("", {"status": "off", "reason": reason}, None)
    key = builder_stage_key("alpha", {"res": inp.res, "alpha": cfg.to_dict(), "unwrap": asdict(inp.unwrap)},
                            [inp.mesh.key, whole.key, inp.selection.key])

    def run(d: Path) -> dict:
        sel, t, mesh = inp.selection, inp.tracks, inp.mesh.mesh
        table = texel_table(mesh.uvs, mesh.faces, inp.res, mesh.n_face_triangles)
        acc = AlphaAccumulator(inp.res)
        slot = {int(g): j for j, g in enumerate(whole.kept)}
        view = replace(inp.unwrap, min_cos=cfg.min_cos)
        h, w = whole.mattes.shape[1:]
        for g in (int(g) for g in sel.train if int(g) in slot):
            verts = mesh.deform(sel.canonical[g])
            pos, ok = texel_projection(verts, sel.rotation[g], sel.translation[g], float(sel.scale[g]), mesh, table,
                                       (h, w), view)
            ok &= above_chin_at(pos[:, 0], pos[:, 1], t.px[g])
            if not ok.any():
                continue
            to_cam = sel.rotation[g].T @ np.array([0.0, 0.0, -1.0])
            cos = (triangle_normals(verts, mesh.faces) @ to_cam)[table.tri[ok]]
            ix = np.clip(np.round(pos[ok, 0]).astype(np.int64), 0, w - 1)
            iy = np.clip(np.round(pos[ok, 1]).astype(np.int64), 0, h - 1)
            acc.add(table.texel[ok], cos, whole.mattes[slot[g]][iy, ix] / 255.0)
        atlas = acc.atlas(table.covered, table.face_region, cfg)
        np.save(d / "alpha.npy", atlas)
        return {"status": "learned", "frames": acc.frames, **alpha_stats(atlas, table.covered, table.face_region)}

    info = cache.run("alpha", key, run)
    return LearnedAlpha(key, info, np.load(cache.work / "alpha" / "alpha.npy", allow_pickle=False))


def alpha_block(learned: LearnedAlpha) -> dict:
    """The manifest's ``alpha`` block."""
    from geometry.edge_alpha import EDGE_COS
    from inference.head_model.alpha_atlas import ALPHA_TENSOR

    if learned.atlas is None:
        return {"included": False, "reason": learned.info.get("reason", "")}
    return {"included": True, "tensor": ALPHA_TENSOR, "meaning": "255 x alpha seen edge-on; a renderer applies "
            "alpha = 1 - (1 - a) * (1 - smoothstep(c0, c1, |cos|)), cos: surface normal . direction to the viewer",
            "edge_cos": list(EDGE_COS), "learned_from": "the training frames' head mattes",
            "metrics": {k: v for k, v in learned.info.items() if k not in ("status",)}}
