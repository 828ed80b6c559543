"""`headcast build-avatar`: monocular video(s) → avatar package, as a resumable staged pipeline.

Stages (each cached in the work directory, see build_cache.py):
  track     FaceMesh (the capture node's tracker) + hand-over-face check on every frame
  select    rigid alignment, frame rejection, robust neutral, held-out slice
  mesh      personal whole-head mesh and UV atlas
  basis     K blendshapes by PCA of canonical displacements, per-frame weights
  textures  visibility-aware unwrap of every kept frame, neutral texture
  vae       VAE training (checkpointed, resumes mid-training)
  evaluate  held-out PSNR / SSIM / reprojection error, decode timing
  animation mp478 features of every tracked frame (the capture node's code path, relative to the
            target's own neutral estimated like calibration/neutral.py) → LSTM + residual encoder
            trained against the VAE encoder's z (inference/animation)
  export    preview.png and the atomic package write
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
import torch
from safetensors.numpy import load_file as load_np, save_file as save_np
from safetensors.torch import load_file as load_pt, save_file as save_pt
from core.progress import progress_bar, writes_above_bars

from inference.animation import AnimationConfig, animation_manifest, animation_tensors, train_animation
from inference.animation.train import RecombinedSamples
from inference.avatar_manifest import build_manifest, export_mesh, feature_normalisation
from inference.features.alignment import STABLE_POINTS, to_canonical, umeyama
from inference.features.mp478 import FEATURE_GAIN, Mp478Extractor
from inference.avatar_package import write_package
from inference.build_cache import StageCache, atomic_write_text, stage_key
from inference.head_model.blendshapes import BasisConfig, Blendshapes, fit_blendshapes
from inference.head_model.face_regions import (
    RecombineConfig, RegionSplit, draw_pairs, relaxed_face, texel_upper_weight,
)
from inference.head_model.frame_selection import SelectionConfig, expression_scores, holdout_blocks, select_frames
from inference.head_model.head_closure import ClosureConfig
from inference.head_model.head_mesh import AtlasLayout, HeadMesh, build_head_mesh
from inference.head_model.metrics import masked_psnr, masked_ssim, reprojection_error_px
from inference.head_model.preview import contact_sheet, face_crop, pick_expressions
from inference.head_model.texture_unwrap import UnwrapConfig, neutral_texture, unwrap_frame
from inference.head_model.topology import NUM_MESH_POINTS
from inference.head_model.tracking import TrackConfig, track_video
from inference.head_model.uv_atlas import texel_table
from inference.head_model.vae import HeadVae, RuntimeDecoder, VaeConfig
from inference.head_model.train_vae import RecombinedTextures, TrainConfig, TrainData, train_vae
from inference.head_model.video_io import VideoError, iter_frames, probe

# Recorded in the manifest (5: packages carry the animation network; 6: regional recombination, the
# target's relaxed face per region (stored), held-out blocks). The cached default avatar is rebuilt
# when its version differs.
BUILDER_VERSION = "6"
# Part of every stage key: bump it when an existing stage's algorithm changes, so a build never
# reuses stale stages. Adding the animation stage (v5) changed no earlier stage: their caches stay valid.
STAGE_VERSION = "4"


def _key(name: str, config, upstream: list[str]) -> str:
    return stage_key(name, {"builder_version": STAGE_VERSION, "config": config}, upstream)


def _json_safe(x):
    """Metrics for avatar.json: non-finite floats (an undefined correlation) become null."""
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    return x


def _round(v, nd: int = 4):
    return None if v is None or not np.isfinite(v) else round(float(v), nd)


class BuildError(RuntimeError):
    """A build input problem the user can act on (no face, unreadable video...)."""


@dataclass(frozen=True)
class BuildConfig:
    videos: tuple[str, ...]
    out: str
    work: str
    res: int = 256
    quick: bool = False
    device: str = "cpu"
    # One intra-op thread by default: on a shared 2-core machine two threads collapse under
    # contention (measured 4x slower per training step, 20x slower per decode at load average 7).
    threads: int = 1
    holdout_fraction: float = 0.12  # share of the kept frames held out (never trained on) ...
    holdout_blocks: int = 3  # ... as this many blocks spread evenly over the clip (frame_selection)
    z_dim: int = 48
    hidden: int = 256
    n_basis: int = 80
    track: TrackConfig = field(default_factory=TrackConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    closure: ClosureConfig = field(default_factory=ClosureConfig)
    basis: BasisConfig = field(default_factory=BasisConfig)
    unwrap: UnwrapConfig = field(default_factory=UnwrapConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    animation: AnimationConfig = field(default_factory=AnimationConfig)  # LSTM + residual encoder
    regions: RegionSplit = field(default_factory=RegionSplit)  # upper / lower face border
    recombine: RecombineConfig = field(default_factory=RecombineConfig)  # upper of one frame + lower of another
    command: str = ""  # the command line, recorded in the manifest's provenance

    @staticmethod
    def preset(videos, out, work, res: int | None = None, quick: bool = False, device: str = "cpu",
               adversarial: bool | None = None, steps: int | None = None, command: str = "",
               threads: int = 1, animation_steps: int | None = None) -> "BuildConfig":
        if quick:
            # First contact and tests: half the frames, a tiny texture, a short training run.
            cfg = BuildConfig(tuple(videos), str(out), str(work), res=res or 64, quick=True, device=device,
                              z_dim=16, hidden=128, n_basis=32, track=TrackConfig(frame_step=2),
                              closure=ClosureConfig(rings=8),
                              train=TrainConfig(steps=150, batch=16, adversarial=False, checkpoint_seconds=1.0),
                              animation=AnimationConfig.quick(), command=command)
        else:
            cfg = BuildConfig(tuple(videos), str(out), str(work), res=res or 256, device=device, command=command,
                              train=TrainConfig(steps=800, batch=12))
        train = cfg.train
        if adversarial is not None:
            train = replace(train, adversarial=adversarial)
        if steps is not None:
            train = replace(train, steps=steps)
        animation = cfg.animation if animation_steps is None else replace(cfg.animation, steps=animation_steps)
        return replace(cfg, train=train, threads=threads, animation=animation)

    @property
    def basis_size(self) -> int:
        return max(self.res // 2, 16)


@dataclass
class BuildResult:
    out: Path
    manifest: dict
    records: list
    seconds: float


def _tqdm(total, desc, unit="f"):
    return progress_bar(total=total, desc=desc, unit=unit, position=1)   # under the stage bar (run)


def _sha256(path: str) -> str:
    from inference.avatar_package import sha256_file

    return sha256_file(Path(path))


def decode_ms(decoder: RuntimeDecoder, z_dim: int, runs: int = 50, threads: int = 1) -> float:
    """Median wall time of one runtime decode on the CPU with ``threads`` intra-op threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        z = torch.zeros(z_dim)
        for _ in range(5):
            decoder(z)
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            decoder(z)
            times.append(time.perf_counter() - t0)
        return 1000.0 * float(np.median(times))
    finally:
        torch.set_num_threads(before)


class AvatarBuilder:
    def __init__(self, config: BuildConfig, log=print):
        self.cfg = config
        self.log = log
        self.work = Path(config.work)
        self.cache = StageCache(self.work)
        self.keys: dict[str, str] = {}
        # Set by the animation-network stage (separate issue) before export: (the manifest's
        # "animation" block with included = true, the "anim.*" tensors). None: head model only.
        self.animation: tuple[dict, dict] | None = None

    # ---- stages -------------------------------------------------------------------------------
    def _track(self, sources: list[dict]) -> None:
        cfg = self.cfg
        key = _key("track", {"sources": [s["sha256"] for s in sources], "track": asdict(cfg.track)}, [])
        self.keys["track"] = key

        def run(d: Path) -> dict:
            total = sum(max(s["frames"] // cfg.track.frame_step, 1) for s in sources)
            info = {"videos": []}
            with _tqdm(total, "track") as bar:
                for i, s in enumerate(sources):
                    tv = track_video(s["path"], cfg.track, on_frame=lambda: bar.update(1))
                    save_np({"landmarks_px": tv.landmarks_px, "frame_index": tv.frame_index.astype(np.int64),
                             "found": tv.found.astype(np.uint8), "hand": tv.hand_occluded.astype(np.uint8),
                             "size": np.array([tv.width, tv.height], np.int64)}, str(d / f"video{i}.safetensors"))
                    info["videos"].append({"frames": int(len(tv.found)), "faces": int(tv.found.sum())})
            return info

        info = self.cache.run("track", key, run)
        if sum(v["faces"] for v in info["videos"]) == 0:
            names = ", ".join(Path(s["path"]).name for s in sources)
            raise BuildError(f"no face found in any frame of {names}: the video must show one person's face")

    def _load_track(self, n_videos: int) -> dict:
        parts = [load_np(str(self.work / "track" / f"video{i}.safetensors")) for i in range(n_videos)]
        return {
            "px": np.concatenate([p["landmarks_px"] for p in parts]),
            "found": np.concatenate([p["found"] for p in parts]).astype(bool),
            "hand": np.concatenate([p["hand"] for p in parts]).astype(bool),
            "video": np.concatenate([np.full(len(p["found"]), i) for i, p in enumerate(parts)]),
            "frame": np.concatenate([p["frame_index"] for p in parts]),
        }

    def _select(self, n_videos: int) -> None:
        cfg = self.cfg
        key = _key("select", {"sel": asdict(cfg.selection), "h": [cfg.holdout_fraction, cfg.holdout_blocks]},
                        [self.keys["track"]])
        self.keys["select"] = key

        def run(d: Path) -> dict:
            t = self._load_track(n_videos)
            try:
                s = select_frames(t["px"], t["found"], t["hand"], cfg.selection)
            except ValueError as exc:
                raise BuildError(str(exc)) from exc
            kept = np.flatnonzero(s.keep)
            if len(kept) < 8:
                raise BuildError(f"only {len(kept)} usable frames after rejecting occluded/badly tracked ones; "
                                 "need at least 8")
            blocks = holdout_blocks(kept, t["video"], t["frame"], cfg.holdout_fraction, cfg.holdout_blocks,
                                    cfg.track.frame_step)
            holdout = np.concatenate(blocks)
            train = np.setdiff1d(kept, holdout)
            save_np({"canonical": s.canonical, "rotation": s.rotation.astype(np.float64),
                     "translation": s.translation.astype(np.float64), "scale": s.scale.astype(np.float64),
                     "keep": s.keep.astype(np.uint8), "neutral": s.neutral, "neutral_frames": s.neutral_frames,
                     "train": train.astype(np.int64), "holdout": holdout.astype(np.int64)},
                    str(d / "selection.safetensors"))
            return {"frames": int(len(s.keep)), "kept": int(len(kept)), "rejected": s.rejected,
                    "train": int(len(train)),
                    "holdout": [[f"video{int(t['video'][g])}:frame{int(t['frame'][g])}" for g in (b[0], b[-1])]
                                for b in blocks],
                    "neutral_frames": int(len(s.neutral_frames))}

        self.select_info = self.cache.run("select", key, run)
        self.sel = load_np(str(self.work / "select" / "selection.safetensors"))

    def _mesh(self) -> None:
        cfg = self.cfg
        key = _key("mesh", {"closure": asdict(cfg.closure)}, [self.keys["select"]])
        self.keys["mesh"] = key

        def run(d: Path) -> dict:
            canon, train, neutral = self.sel["canonical"], self.sel["train"], self.sel["neutral"]
            mouth, _ = expression_scores(canon[train])
            open_shape = canon[train[mouth >= np.quantile(mouth, 0.9)]].mean(0)
            # UV/triangulation shape: mouth opened part-way, so the mouth interior gets texels.
            mesh = build_head_mesh(neutral, neutral + 0.6 * (open_shape - neutral), cfg.closure)
            save_np({"positions": mesh.positions, "uvs": mesh.uvs, "faces": mesh.faces.astype(np.int64),
                     "face_map": mesh.face_map, "neutral_face": mesh.neutral_face,
                     "n_face_triangles": np.array([mesh.n_face_triangles], np.int64)}, str(d / "mesh.safetensors"))
            return {"vertices": int(len(mesh.positions)), "triangles": int(len(mesh.faces))}

        self.cache.run("mesh", key, run)
        m = load_np(str(self.work / "mesh" / "mesh.safetensors"))
        self.mesh = HeadMesh(m["positions"], m["uvs"], m["faces"], m["face_map"], m["neutral_face"],
                             int(m["n_face_triangles"][0]))

    # ---- recombined faces (face_regions): one set of donor pairs for basis, VAE and animation ----
    def _recombination_key(self) -> dict:
        return {"regions": asdict(self.cfg.regions), "recombine": self.cfg.recombine.to_dict()}

    def _recombined_pairs(self) -> np.ndarray:
        """(M, 2) [upper donor, lower donor] training frames. A share of the pairs joins frames the
        relaxed face was assembled from (open eyes above, a closed mouth below): recombined, they
        are the target's relaxed face with its natural variation — the face every relaxed driver's
        features point at, which the clip itself may never show."""
        if getattr(self, "_pairs", None) is not None:
            return self._pairs
        rc = self.cfg.recombine
        if not rc.enabled:
            self._pairs = np.zeros((0, 2), np.int64)
            return self._pairs
        train = self.sel["train"]
        n_relaxed = int(round(rc.relaxed_share * rc.pairs))
        _, upper, lower = self._relaxed()
        upper, lower = np.intersect1d(upper, train), np.intersect1d(lower, train)
        if not (len(upper) and len(lower)):
            n_relaxed = 0
        pairs = draw_pairs(train, rc.pairs - n_relaxed, rc.seed)
        if n_relaxed:
            rng = np.random.default_rng(rc.seed + 1)
            relaxed = np.stack([rng.choice(upper, n_relaxed), rng.choice(lower, n_relaxed)], 1)
            pairs = np.concatenate([relaxed, pairs])
        self._pairs = pairs
        return pairs

    def _recombined_displacements(self, pairs: np.ndarray) -> np.ndarray:
        """(M, P, 3) canonical displacements from the neutral of the recombined faces."""
        neutral = self.sel["neutral"]
        disp = self.sel["canonical"][:, :NUM_MESH_POINTS] - neutral[:NUM_MESH_POINTS]
        w = self.cfg.regions.upper_weight(neutral, neutral)[:NUM_MESH_POINTS, None]
        return w * disp[pairs[:, 0]] + (1 - w) * disp[pairs[:, 1]]

    def _basis(self) -> None:
        cfg = self.cfg
        key = _key("basis", {**asdict(cfg.basis), **self._recombination_key()}, [self.keys["select"]])
        self.keys["basis"] = key

        def run(d: Path) -> dict:
            canon, neutral = self.sel["canonical"], self.sel["neutral"]
            kept = np.flatnonzero(self.sel["keep"])
            disp = canon[:, :NUM_MESH_POINTS] - neutral[:NUM_MESH_POINTS]
            fit = disp[self.sel["train"]]
            # As many recombined faces as real ones: the basis must span eyes and mouth moving apart.
            pairs = self._recombined_pairs()
            mixed = self._recombined_displacements(pairs[::max(1, len(pairs) // max(1, len(fit)))][:len(fit)])
            bs = fit_blendshapes(np.concatenate([fit, mixed]), cfg.basis)
            weights = np.zeros((len(canon), bs.k), np.float32)
            weights[kept] = bs.weights(disp[kept])
            save_np({"basis": bs.basis, "weights": weights, "explained": np.array([bs.explained], np.float64)},
                    str(d / "basis.safetensors"))
            return {"k": bs.k, "explained_variance": round(bs.explained, 4)}

        self.basis_info = self.cache.run("basis", key, run)
        b = load_np(str(self.work / "basis" / "basis.safetensors"))
        self.blendshapes = Blendshapes(b["basis"], float(b["explained"][0]))
        self.weights = b["weights"]

    def _textures(self, sources: list[dict]) -> None:
        cfg = self.cfg
        key = _key("textures", {"res": cfg.res, "unwrap": asdict(cfg.unwrap)}, [self.keys["mesh"]])
        self.keys["textures"] = key

        def run(d: Path) -> dict:
            t = self._load_track(len(sources))
            keep = self.sel["keep"].astype(bool)
            kept = np.flatnonzero(keep)
            table = texel_table(self.mesh.uvs, self.mesh.faces, cfg.res, self.mesh.n_face_triangles)
            tex = np.zeros((len(kept), cfg.res, cfg.res, 3), np.uint8)
            valid = np.zeros((len(kept), cfg.res, cfg.res), bool)
            slot = {int(g): j for j, g in enumerate(kept)}
            with _tqdm(len(kept), "textures") as bar:
                for v, s in enumerate(sources):
                    rows = np.flatnonzero((t["video"] == v) & keep)
                    want = {int(t["frame"][g]): int(g) for g in rows}
                    for fi, frame in enumerate(iter_frames(s["path"])):
                        g = want.get(fi)
                        if g is None:
                            continue
                        verts = self.mesh.deform(self.sel["canonical"][g])
                        tex[slot[g]], valid[slot[g]] = unwrap_frame(
                            frame, verts, self.sel["rotation"][g], self.sel["translation"][g],
                            float(self.sel["scale"][g]), self.mesh, table, cfg.unwrap)
                        bar.update(1)
            neutral_rows = [slot[int(g)] for g in self.sel["neutral_frames"] if int(g) in slot]
            split = int(round(0.5 * (AtlasLayout().face_v_max + AtlasLayout().cap_v_min) * cfg.res))
            ntex, seen = neutral_texture(tex[neutral_rows], valid[neutral_rows], split)
            np.save(d / "textures.npy", tex)
            np.save(d / "valid.npy", valid)
            save_np({"neutral": ntex, "kept": kept.astype(np.int64), "covered": table.covered.astype(np.uint8)},
                    str(d / "neutral.safetensors"))
            return {"frames": int(len(kept)), "mean_valid_fraction_of_face":
                    round(float(valid[:, table.face_region].mean()), 3)}

        self.cache.run("textures", key, run)
        self.tex = np.load(self.work / "textures" / "textures.npy", allow_pickle=False)
        self.valid = np.load(self.work / "textures" / "valid.npy", allow_pickle=False)
        n = load_np(str(self.work / "textures" / "neutral.safetensors"))
        self.neutral_tex, self.kept = n["neutral"], n["kept"]

    def _vae_config(self) -> VaeConfig:
        c = self.cfg
        return VaeConfig(texture_size=c.res, n_weights=self.blendshapes.k, z_dim=c.z_dim, hidden=c.hidden,
                         basis_size=c.basis_size, n_basis=c.n_basis)

    def _train_data(self) -> tuple[TrainData, np.ndarray]:
        """The VAE's training data (filled textures, validity, weights, recombined faces) and the
        held-out rows; built once per build (stages after `basis` and `textures` share it)."""
        if getattr(self, "_data", None) is None:
            self._data = self._make_train_data()
        return self._data

    def _make_train_data(self) -> tuple[TrainData, np.ndarray]:
        filled = np.where(self.valid[..., None], self.tex, self.neutral_tex[None])
        slot = {int(g): j for j, g in enumerate(self.kept)}
        train_rows = np.array([slot[int(g)] for g in self.sel["train"]])
        holdout_rows = np.array([slot[int(g)] for g in self.sel["holdout"]])
        data = TrainData(torch.from_numpy(filled).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(self.valid),
                         torch.from_numpy(self.weights[self.kept]), train_rows)
        pairs = self._recombined_pairs()
        if len(pairs):
            rows = np.array([[slot[int(a)], slot[int(b)]] for a, b in pairs], np.int64)
            weights = self.blendshapes.weights(self._recombined_displacements(pairs))
            table = texel_table(self.mesh.uvs, self.mesh.faces, self.cfg.res, self.mesh.n_face_triangles)
            texel_w = texel_upper_weight(self.cfg.regions, self.sel["neutral"], self.mesh.positions,
                                         self.mesh.faces, table)
            per_batch = int(round(self.cfg.recombine.vae_fraction * self.cfg.train.batch))
            data.recombined = RecombinedTextures(rows, torch.from_numpy(weights), torch.from_numpy(texel_w), per_batch)
        return data, holdout_rows

    def _vae(self) -> None:
        cfg = self.cfg
        vcfg = self._vae_config()
        key = _key("vae", {"vae": vcfg.to_json(), "train": asdict(cfg.train), "device": cfg.device,
                           **self._recombination_key()},
                        [self.keys["textures"], self.keys["basis"]])
        self.keys["vae"] = key

        def run(d: Path) -> dict:
            data, _ = self._train_data()
            ckpt = d / "checkpoint.safetensors"
            meta = d / "checkpoint.key"
            if ckpt.is_file() and (not meta.is_file() or meta.read_text() != key):
                ckpt.unlink()  # a checkpoint of a different configuration must not be resumed
            atomic_write_text(meta, key)
            last = {}
            with _tqdm(cfg.train.steps, "vae", unit="step") as bar:
                def on_step(step, stats):
                    if bar.n == 0 and step > 0:
                        bar.update(step)
                    bar.update(1)
                    last.update(stats)
                    if step % 25 == 0:
                        bar.set_postfix(l1=f"{stats['l1']:.4f}", kl=f"{stats['kl']:.1f}")
                vae, hist = train_vae(data, vcfg, cfg.train, ckpt, cfg.device, on_step)
            save_pt({k: v.contiguous() for k, v in vae.state_dict().items()}, str(d / "vae.safetensors"))
            return {"steps": cfg.train.steps, "resumed_from_step": int(hist["resumed_from_step"]),
                    "final_l1": round(float(hist.get("l1", float("nan"))), 5)}

        self.vae_info = self.cache.run("vae", key, run)
        vae = HeadVae(vcfg)
        vae.load_state_dict(load_pt(str(self.work / "vae" / "vae.safetensors")))
        self.vae = vae.eval()

    def _evaluate(self) -> None:
        key = _key("evaluate", {"v": 1}, [self.keys["vae"]])
        self.keys["evaluate"] = key

        def run(d: Path) -> dict:
            data, ho = self._train_data()
            out = {}
            with torch.no_grad():
                for name, rows in (("holdout", ho), ("train", data.train_idx[:: max(1, len(data.train_idx) // 48)])):
                    r = torch.as_tensor(rows)
                    target = data.textures[r].float() / 255
                    mu, _ = self.vae.encoder(target, data.weights[r])
                    tex, w = self.vae.decoder(mu)
                    tex = tex.clamp(0, 1)
                    out[f"{name}_psnr_db"] = round(masked_psnr(tex, target, data.valid[r]), 3)
                    out[f"{name}_ssim"] = round(masked_ssim(tex, target, data.valid[r]), 4)
                    if name == "holdout":
                        g = self.kept[rows]
                        face = self.sel["neutral"][:NUM_MESH_POINTS] + self.blendshapes.displacement(w.numpy())
                        px = self._load_track_px(g)
                        args = (self.sel["rotation"][g], self.sel["translation"][g], self.sel["scale"][g], px)
                        out["holdout_reprojection_px"] = round(reprojection_error_px(face, *args), 3)
                        basis_face = self.sel["neutral"][:NUM_MESH_POINTS] + self.blendshapes.displacement(
                            self.weights[g])
                        out["holdout_basis_reprojection_px"] = round(reprojection_error_px(basis_face, *args), 3)
            out["decode_ms_cpu_1thread"] = round(decode_ms(RuntimeDecoder(self.vae.decoder), self.vae.cfg.z_dim), 3)
            out["decoder_parameters"] = int(sum(p.numel() for p in self.vae.decoder.parameters()))
            out["holdout_frames"] = int(len(ho))
            return out

        self.metrics = self.cache.run("evaluate", key, run)

    def _relaxed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The target's own relaxed face, the origin of her training features, and the kept frames
        its upper and lower face come from (global indices).

        At runtime the capture node subtracts the *driver's* relaxed face (``headcast calibrate
        neutral``) from the driver's face, so the training pairs must mean the same: "this face
        minus its own relaxed face". A calibration recording shows a relaxed face throughout; a
        target clip may never show one whole (the sample laughs or cries in every usable frame), so
        it is assembled per region (``face_regions.relaxed_face``: closed, unstretched mouth; open
        eyes), from geometric-frame canonicals (as the capture node measures them) realigned to a
        first estimate on the stable points."""
        if getattr(self, "_relaxed_cache", None) is None:
            px = self._load_track_px(np.arange(len(self.sel["keep"])))
            kept = np.flatnonzero(self.sel["keep"])
            canon = np.array([to_canonical(px[g])[0] for g in kept])
            first = relaxed_face(canon, self.cfg.regions).canonical
            realigned = np.array([umeyama(c[STABLE_POINTS], first[STABLE_POINTS]).apply(c) for c in canon])
            r = relaxed_face(realigned, self.cfg.regions)
            self._relaxed_cache = (r.canonical, kept[r.upper_frames], kept[r.lower_frames])
        return self._relaxed_cache

    def _recombined_latents(self, data: TrainData) -> RecombinedSamples | None:
        """The animation network's recombined samples: the same donor pairs as the VAE's, each
        with its features blended per landmark and its latent from the head model's encoder, and
        the latent of the relaxed face itself (``_relaxed_latent``)."""
        rc = data.recombined
        if rc is None:
            return None
        z = np.zeros((len(rc.pairs), self.vae.cfg.z_dim), np.float32)
        with torch.no_grad():
            for i in range(0, len(rc.pairs), 64):
                tex, _, w = rc.batch(data, np.arange(i, min(i + 64, len(rc.pairs))))
                z[i:i + 64] = self.vae.encoder(tex, w)[0].numpy()
        point_w = self.cfg.regions.upper_weight(self.sel["neutral"], self.sel["neutral"])
        return RecombinedSamples(self._recombined_pairs(), z, np.repeat(point_w, 3), self.cfg.recombine.animation_fraction,
                                 relaxed_z=self._relaxed_latent(data), relaxed_per_batch=self.cfg.recombine.relaxed_windows)

    def _relaxed_latent(self, data: TrainData) -> np.ndarray:
        """z of the relaxed face: per-texel and per-landmark medians of the frames its upper and its
        lower face come from, recombined. No single frame is that face — every frame sits at some
        distance from the median in feature space — so the animation network is shown it
        explicitly: a relaxed driver (features ≈ 0) must get the target's relaxed face."""
        _, upper, lower = self._relaxed()
        slot = {int(g): j for j, g in enumerate(self.kept)}
        neutral = self.sel["neutral"]
        point_w = self.cfg.regions.upper_weight(neutral, neutral)[:NUM_MESH_POINTS, None]
        canon = self.sel["canonical"][:, :NUM_MESH_POINTS]
        face = point_w * np.median(canon[upper], 0) + (1 - point_w) * np.median(canon[lower], 0)
        weights = self.blendshapes.weights((face - neutral[:NUM_MESH_POINTS])[None])
        rows = [torch.as_tensor([slot[int(g)] for g in frames]) for frames in (upper, lower)]
        up, lo = (data.textures[r].float().median(0).values / 255 for r in rows)
        tw = data.recombined.texel_weight
        with torch.no_grad():
            return self.vae.encoder((tw * up + (1 - tw) * lo)[None], torch.from_numpy(weights))[0][0].numpy()

    def _animation_data(self) -> dict:
        """Training arrays over ALL tracked frames (time order, every video): mp478 features by the
        capture node's extractor (``Mp478Extractor.extract``: Umeyama alignment to the neutral,
        then gain × (canonical − neutral)), z = the VAE encoder mean of kept frames (NaN elsewhere)."""
        t = self._load_track(len(self.cfg.videos))
        keep = self.sel["keep"].astype(bool)
        n = len(keep)
        neutral = self._relaxed()[0]
        extractor = Mp478Extractor(neutral, gain=FEATURE_GAIN)
        feats = np.full((n, 478 * 3), np.nan, np.float32)
        for g in np.flatnonzero(t["found"]):
            try:
                feats[g] = extractor.extract(t["px"][g]).features.reshape(-1)
            except ValueError:  # degenerate landmarks: the capture node sends FACE_LOST for these
                pass
        data, _ = self._train_data()
        z = np.full((n, self.vae.cfg.z_dim), np.nan, np.float32)
        with torch.no_grad():
            for i in range(0, len(self.kept), 64):
                r = torch.arange(i, min(i + 64, len(self.kept)))
                mu, _ = self.vae.encoder(data.textures[r].float() / 255, data.weights[r])
                z[self.kept[r.numpy()]] = mu.numpy()
        holdout = np.zeros(n, bool)
        holdout[self.sel["holdout"]] = True
        return {"features": feats, "z": z, "valid": keep & np.isfinite(feats).all(1), "holdout": holdout,
                "segments": t["video"].astype(np.int64), "neutral": neutral}

    def _animation(self) -> None:
        cfg = self.cfg
        key = _key("animation", {"anim": cfg.animation.to_dict(), "gain": FEATURE_GAIN,
                                 "neutral": "relaxed-face", **self._recombination_key()},
                   [self.keys["vae"], self.keys["select"], self.keys["track"]])
        self.keys["animation"] = key

        def run(d: Path) -> dict:
            arrays = self._animation_data()
            # For `python -m inference.animation.ablate --npz` on real data (plain arrays, no pickles).
            np.savez(d / "animation_data.npz", **arrays)
            with _tqdm(cfg.animation.steps, "animation", unit="step") as bar:
                try:
                    net, norm, metrics = train_animation(
                        arrays["features"], arrays["z"], arrays["valid"], cfg.animation, segments=arrays["segments"],
                        holdout=arrays["holdout"], decoder=self.vae.decoder,
                        recombined=self._recombined_latents(self._train_data()[0]),
                        progress=lambda *_: bar.update(1))
                except ValueError as exc:  # too few usable frames outside the held-out slice
                    raise BuildError(f"animation network: {exc}") from exc
            block = {"included": True, **animation_manifest(net, norm, "mp478", _json_safe(metrics))}
            save_pt(animation_tensors(net, norm, target_neutral=arrays["neutral"]), str(d / "animation.safetensors"))
            atomic_write_text(d / "animation.json", json.dumps(block, indent=1))
            ho = metrics.get("holdout") or {}
            return {"train_frames": metrics["frames"]["train"], "holdout_frames": metrics["frames"]["holdout"],
                    "holdout_z_r2": _round(ho.get("z_r2")), "holdout_weights_r2": _round(ho.get("weights_r2")),
                    "train_seconds": metrics["seconds"]}

        self.animation_info = self.cache.run("animation", key, run)
        d = self.work / "animation"
        block = json.loads((d / "animation.json").read_text())
        self.animation = (block, load_pt(str(d / "animation.safetensors")))

    def _load_track_px(self, global_rows: np.ndarray) -> np.ndarray:
        if not hasattr(self, "_px"):
            self._px = self._load_track(len(self.cfg.videos))["px"]
        return self._px[global_rows]

    def _export(self, sources: list[dict], t_start: float) -> dict:
        cfg = self.cfg
        out = Path(cfg.out)
        ok, png = cv2.imencode(".png", self._preview(sources)[:, :, ::-1])
        if not ok:
            raise BuildError("could not encode preview.png")
        build = {"frames": self.select_info["frames"], "kept": self.select_info["kept"],
                 "rejected": self.select_info["rejected"], "train_frames": self.select_info["train"],
                 "holdout_frame_ranges": self.select_info["holdout"],
                 "stages": {r.name: {"seconds": round(r.seconds, 2), "cached": r.cached} for r in self.cache.records},
                 "seconds_total_this_run": round(time.monotonic() - t_start, 2)}
        manifest = build_manifest(
            name=out.name, vae=self.vae.cfg, mesh=self.mesh, explained_variance=self.basis_info["explained_variance"],
            train_config=cfg.train, animation=self.animation[0] if self.animation else None, sources=sources,
            command=cfg.command, builder_version=BUILDER_VERSION, device=cfg.device, quick=cfg.quick,
            build=build, metrics=self.metrics,
            feature_normalisation=feature_normalisation(FEATURE_GAIN, self.animation[0]["normalisation"]["mode"])
            if self.animation else None)
        write_package(out, manifest, self.vae, export_mesh(self.mesh, self.blendshapes), self.neutral_tex,
                      png.tobytes(), extra_tensors=self.animation[1] if self.animation else None)
        return manifest

    def _preview(self, sources: list[dict]) -> np.ndarray:
        picks = pick_expressions(self.weights, self.sel["train"])
        slot = {int(g): j for j, g in enumerate(self.kept)}
        data, _ = self._train_data()
        expressions = []
        with torch.no_grad():
            for g in picks:
                r = torch.as_tensor([slot[g]])
                mu, _ = self.vae.encoder(data.textures[r].float() / 255, data.weights[r])
                tex, wd = self.vae.decoder(mu)
                rgb = (tex[0].clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).numpy()
                face = self.sel["neutral"][:NUM_MESH_POINTS] + self.blendshapes.displacement(wd.numpy())[0]
                expressions.append((self.mesh.deform(face), rgb))
        t = self._load_track(len(sources))
        found: dict[int, np.ndarray] = {}
        for v, s in enumerate(sources):  # one decoding pass per video, stopping after the last pick
            wanted = {int(t["frame"][g]): g for g in picks if int(t["video"][g]) == v}
            for i, frame in enumerate(iter_frames(s["path"]) if wanted else []):
                if i in wanted:
                    found[wanted[i]] = face_crop(frame, t["px"][wanted[i]])
                if len(found) == len(picks) or i >= max(wanted):
                    break
        crops = [found[g] for g in picks if g in found]
        return contact_sheet(self.mesh.positions, self.mesh.faces, self.mesh.uvs, self.neutral_tex,
                             expressions, crops)

    # ---- driver -------------------------------------------------------------------------------
    def run(self) -> BuildResult:
        cfg = self.cfg
        t0 = time.monotonic()
        torch.set_num_threads(max(1, cfg.threads))
        if cfg.device == "cuda" and not torch.cuda.is_available():
            raise BuildError("--device cuda requested but torch sees no CUDA device")
        sources = []
        for v in cfg.videos:
            try:
                info = probe(v)
            except VideoError as exc:
                raise BuildError(str(exc)) from exc
            sources.append({"path": str(Path(v).absolute()), "sha256": _sha256(v), "frames": info.frames,
                            "fps": info.fps, "width": info.width, "height": info.height})
        self.work.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.work / "build.json", json.dumps({"videos": list(cfg.videos), "out": cfg.out,
                                                                  "res": cfg.res, "quick": cfg.quick}, indent=1))
        steps = [("track", lambda: self._track(sources)), ("select", lambda: self._select(len(sources))),
                 ("mesh", self._mesh), ("basis", self._basis), ("textures", lambda: self._textures(sources)),
                 ("vae", self._vae), ("evaluate", self._evaluate), ("animation", self._animation)]
        # One bar over the stages (what the first `make demo` waits on), the stage's own bar below it.
        with progress_bar(total=len(steps) + 1, desc="avatar", unit="stage", position=0) as stages:
            for name, fn in steps:
                stages.set_postfix_str(name)
                fn()
                stages.update(1)
                r = self.cache.records[-1]
                with writes_above_bars():
                    self.log(f"  {name:<9} {'cached' if r.cached else 'done':<6} {r.seconds:7.1f} s  "
                             + ", ".join(f"{k}={v}" for k, v in r.info.items() if not isinstance(v, (list, dict))))
            stages.set_postfix_str("export")
            te = time.monotonic()
            manifest = self._export(sources, t0)
            stages.update(1)
        self.log(f"  {'export':<9} {'done':<6} {time.monotonic() - te:7.1f} s")
        return BuildResult(Path(cfg.out), manifest, self.cache.records, time.monotonic() - t0)
