"""Stage ``evaluate``: held-out PSNR / SSIM and reprojection error, decoder size and decode time."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from inference.head_model.metrics import decode_ms, masked_psnr, masked_ssim, reprojection_error_px
from inference.head_model.topology import NUM_MESH_POINTS
from inference.head_model.vae import RuntimeDecoder

from .basis import Basis
from .cache import StageCache, builder_stage_key
from .select import SelectedFrames
from .track import Tracks
from .vae import HeadModelData, TrainedVae

TRAIN_SAMPLE = 48  # training frames scored beside the held-out ones (every n-th, about this many)


@dataclass(frozen=True, eq=False)
class EvaluateInput:
    vae: TrainedVae
    data: HeadModelData
    selection: SelectedFrames
    basis: Basis
    tracks: Tracks


@dataclass(frozen=True)
class Evaluation:
    key: str
    metrics: dict  # the manifest's "metrics" block


def evaluate(cache: StageCache, inp: EvaluateInput) -> Evaluation:
    key = builder_stage_key("evaluate", {"v": 1}, [inp.vae.key])
    vae, sel, bs = inp.vae.vae, inp.selection, inp.basis

    def run(d: Path) -> dict:
        data, ho = inp.data.train, inp.data.holdout_rows
        out = {}
        with torch.no_grad():
            for name, rows in (("holdout", ho), ("train", data.train_idx[:: max(1, len(data.train_idx) // TRAIN_SAMPLE)])):
                r = torch.as_tensor(rows)
                target = data.textures[r].float() / 255
                mu, _ = vae.encoder(target, data.weights[r])
                tex, w = vae.decoder(mu)
                tex = tex.clamp(0, 1)
                out[f"{name}_psnr_db"] = round(masked_psnr(tex, target, data.valid[r]), 3)
                out[f"{name}_ssim"] = round(masked_ssim(tex, target, data.valid[r]), 4)
                if name == "holdout":
                    g = inp.data.kept[rows]
                    neutral = sel.neutral[:NUM_MESH_POINTS]
                    args = (sel.rotation[g], sel.translation[g], sel.scale[g], inp.tracks.px[g])
                    out["holdout_reprojection_px"] = round(
                        reprojection_error_px(neutral + bs.blendshapes.displacement(w.numpy()), *args), 3)
                    out["holdout_basis_reprojection_px"] = round(
                        reprojection_error_px(neutral + bs.blendshapes.displacement(bs.weights[g]), *args), 3)
        out["decode_ms_cpu_1thread"] = round(decode_ms(RuntimeDecoder(vae.decoder), vae.cfg.z_dim), 3)
        out["decoder_parameters"] = int(sum(p.numel() for p in vae.decoder.parameters()))
        out["holdout_frames"] = int(len(ho))
        return out

    return Evaluation(key, cache.run("evaluate", key, run))
