"""Stage ``textures``: visibility-aware unwrap of every kept frame into the UV atlas, and the
neutral texture."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file as load_np, save_file as save_np

from inference.head_model.texture_unwrap import UnwrapConfig, hair_regions, neutral_texture, unwrap_frame
from inference.head_model.uv_atlas import texel_table

from .cache import StageCache, builder_stage_key
from .mesh import PersonalMesh
from .progress import progress
from .select import SelectedFrames
from .sources import Source
from .track import Tracks, decode_frames


@dataclass(frozen=True, eq=False)
class TexturesInput:
    sources: tuple[Source, ...]
    tracks: Tracks
    selection: SelectedFrames
    mesh: PersonalMesh
    res: int
    unwrap: UnwrapConfig
    # A whole head's carved shell: its unseen part above the nose tip takes the seen top of the
    # head's colour, and the atlas's gutters their nearest island's (texture_unwrap.neutral_texture);
    # False keeps builder 7's key and texture.
    hair_fill: bool = False


@dataclass(frozen=True, eq=False)
class Textures:
    key: str
    textures: np.ndarray  # (n_kept, S, S, 3) uint8 unwrapped atlas per kept frame
    valid: np.ndarray  # (n_kept, S, S) bool: texels the frame saw
    neutral: np.ndarray  # (S, S, 3) uint8 neutral texture
    kept: np.ndarray  # (n_kept,) int64: the global frame of each row


def unwrap_textures(cache: StageCache, inp: TexturesInput) -> Textures:
    sel, mesh, res = inp.selection, inp.mesh.mesh, inp.res
    params = {"res": res, "unwrap": asdict(inp.unwrap)}
    if inp.hair_fill:
        params["hair_fill"], params["gutters"] = "top-median", "nearest-island"
    key = builder_stage_key("textures", params, [inp.mesh.key])

    def run(d: Path) -> dict:
        t = inp.tracks
        keep = sel.keep
        kept = np.flatnonzero(keep)
        table = texel_table(mesh.uvs, mesh.faces, res, mesh.n_face_triangles)
        tex = np.zeros((len(kept), res, res, 3), np.uint8)
        valid = np.zeros((len(kept), res, res), bool)
        slot = {int(g): j for j, g in enumerate(kept)}
        with progress(len(kept), "textures") as bar:
            for g, frame in decode_frames(inp.sources, t, kept):
                verts = mesh.deform(sel.canonical[g])
                tex[slot[g]], valid[slot[g]] = unwrap_frame(
                    frame, verts, sel.rotation[g], sel.translation[g], float(sel.scale[g]), mesh, table,
                    inp.unwrap)
                bar.update(1)
        neutral_rows = [slot[int(g)] for g in sel.neutral_frames if int(g) in slot]
        split = int(round(mesh.atlas_split * res))
        hair = hair_regions(mesh.positions, mesh.faces, table, mesh.neutral_face) if inp.hair_fill else None
        ntex, seen = neutral_texture(tex[neutral_rows], valid[neutral_rows], split, hair,
                                     table.covered if inp.hair_fill else None)
        np.save(d / "textures.npy", tex)
        np.save(d / "valid.npy", valid)
        save_np({"neutral": ntex, "kept": kept.astype(np.int64), "covered": table.covered.astype(np.uint8)},
                str(d / "neutral.safetensors"))
        return {"frames": int(len(kept)), "mean_valid_fraction_of_face":
                round(float(valid[:, table.face_region].mean()), 3)}

    cache.run("textures", key, run)
    d = cache.work / "textures"
    n = load_np(str(d / "neutral.safetensors"))
    return Textures(key, np.load(d / "textures.npy", allow_pickle=False), np.load(d / "valid.npy", allow_pickle=False),
                    n["neutral"], n["kept"])
