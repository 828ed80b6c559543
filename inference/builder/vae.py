"""The head model's training data (built once, shared by the VAE, evaluate, animation and preview
steps) and stage ``vae``: VAE training, checkpointed so it resumes mid-training.

The trained VAE — encoder and decoder — stays in ``vae/vae.safetensors`` of the work directory;
the package takes only the decoder (inference/avatar_package.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file as load_pt, save_file as save_pt

from core.atomic_files import atomic_write_text
from inference.head_model.face_regions import RecombineConfig, RegionSplit, texel_upper_weight
from inference.head_model.train_vae import RecombinedTextures, TrainConfig, TrainData, train_vae
from inference.head_model.uv_atlas import texel_table
from inference.head_model.vae import HeadVae, VaeConfig

from .basis import Basis
from .cache import StageCache, builder_stage_key
from .mesh import PersonalMesh
from .progress import progress
from .recombination import Recombination
from .select import SelectedFrames
from .textures import Textures


@dataclass(frozen=True, eq=False)
class HeadModelData:
    """The VAE's training data: filled textures, validity, weights and recombined faces of the
    kept frames (row j = global frame ``kept[j]``), and the held-out rows."""

    train: TrainData
    holdout_rows: np.ndarray
    kept: np.ndarray  # (n_kept,) global frame of each row

    def rows(self, frames) -> np.ndarray:
        """Rows of the given global (kept) frames."""
        slot = {int(g): j for j, g in enumerate(self.kept)}
        return np.array([slot[int(g)] for g in frames])


def head_model_data(selection: SelectedFrames, textures: Textures, basis: Basis, mesh: PersonalMesh,
                    recombination: Recombination, regions: RegionSplit, recombine: RecombineConfig,
                    batch: int, res: int) -> HeadModelData:
    m = mesh.mesh
    filled = np.where(textures.valid[..., None], textures.textures, textures.neutral[None])
    slot = {int(g): j for j, g in enumerate(textures.kept)}
    train_rows = np.array([slot[int(g)] for g in selection.train])
    holdout_rows = np.array([slot[int(g)] for g in selection.holdout])
    data = TrainData(torch.from_numpy(filled).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(textures.valid),
                     torch.from_numpy(basis.weights[textures.kept]), train_rows)
    pairs = recombination.pairs
    if len(pairs):
        rows = np.array([[slot[int(a)], slot[int(b)]] for a, b in pairs], np.int64)
        weights = basis.blendshapes.weights(recombination.displacements(selection))
        table = texel_table(m.uvs, m.faces, res, m.n_face_triangles)
        texel_w = texel_upper_weight(regions, selection.neutral, m.positions, m.faces, table)
        per_batch = int(round(recombine.vae_fraction * batch))
        data.recombined = RecombinedTextures(rows, torch.from_numpy(weights), torch.from_numpy(texel_w), per_batch)
    return HeadModelData(data, holdout_rows, textures.kept)


@dataclass(frozen=True, eq=False)
class VaeInput:
    data: HeadModelData
    vae: VaeConfig
    train: TrainConfig
    device: str
    recombination_key: dict  # BuildConfig.recombination_key()
    textures_key: str
    basis_key: str


@dataclass(frozen=True, eq=False)
class TrainedVae:
    key: str
    info: dict  # steps, resumed_from_step, final_l1
    vae: HeadVae  # eval mode


def train_head_model(cache: StageCache, inp: VaeInput) -> TrainedVae:
    key = builder_stage_key("vae", {"vae": inp.vae.to_json(), "train": asdict(inp.train), "device": inp.device,
                                    **inp.recombination_key},
                            [inp.textures_key, inp.basis_key])

    def run(d: Path) -> dict:
        ckpt = d / "checkpoint.safetensors"
        meta = d / "checkpoint.key"
        if ckpt.is_file() and (not meta.is_file() or meta.read_text() != key):
            ckpt.unlink()  # a checkpoint of a different configuration must not be resumed
        atomic_write_text(meta, key)
        last = {}
        with progress(inp.train.steps, "vae", unit="step") as bar:
            def on_step(step, stats):
                if bar.n == 0 and step > 0:
                    bar.update(step)
                bar.update(1)
                last.update(stats)
                if step % 25 == 0:
                    bar.set_postfix(l1=f"{stats['l1']:.4f}", kl=f"{stats['kl']:.1f}")
            vae, hist = train_vae(inp.data.train, inp.vae, inp.train, ckpt, inp.device, on_step)
        save_pt({k: v.contiguous() for k, v in vae.state_dict().items()}, str(d / "vae.safetensors"))
        return {"steps": inp.train.steps, "resumed_from_step": int(hist["resumed_from_step"]),
                "final_l1": round(float(hist.get("l1", float("nan"))), 5)}

    info = cache.run("vae", key, run)
    vae = HeadVae(inp.vae)
    vae.load_state_dict(load_pt(str(cache.work / "vae" / "vae.safetensors")))
    return TrainedVae(key, info, vae.eval())


def encode_rows(vae: HeadVae, data: HeadModelData, rows: np.ndarray | None = None, chunk: int = 64) -> np.ndarray:
    """(len(rows), Z) float32: the encoder's mean for the given rows (all kept frames by default)."""
    rows = np.arange(len(data.kept)) if rows is None else np.asarray(rows)
    z = np.zeros((len(rows), vae.cfg.z_dim), np.float32)
    t = data.train
    with torch.no_grad():
        for i in range(0, len(rows), chunk):
            r = torch.as_tensor(rows[i:i + chunk])
            z[i:i + chunk] = vae.encoder(t.textures[r].float() / 255, t.weights[r])[0].numpy()
    return z
