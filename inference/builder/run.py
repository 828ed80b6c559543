"""The build driver: probes the sources, then chains the stages through the work directory's
StageCache, each stage's typed result feeding the next, and exports the package."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from core.atomic_files import atomic_write_text
from core.progress import writes_above_bars

from .alpha import AlphaInput, learn_alpha
from .animation import AnimationInput, train_animation_network
from .basis import BasisInput, fit_basis
from .cache import StageCache, StageRecord
from .config import BuildConfig, BuildError
from .evaluate import EvaluateInput, evaluate
from .export import ExportInput, PreviewInput, export, preview
from .kind_maps import KindMapInput, fit_kind_maps
from .mesh import MeshInput, build_mesh
from .progress import stages_bar
from .recombination import draw_recombination, target_relaxed_face
from .select import SelectInput, select
from .sources import probe_sources
from .textures import TexturesInput, unwrap_textures
from .torso import TorsoInput, fit_torso
from .track import TrackInput, track
from .vae import VaeInput, head_model_data, train_head_model
from .refinement import RefinementInput, train_refinement_stage
from .whole_head import WholeHeadInput, fit_whole_head


@dataclass(frozen=True)
class BuildResult:
    out: Path
    manifest: dict
    records: tuple[StageRecord, ...]
    seconds: float


def _log_stage(log: Callable[[str], None], name: str, cache: StageCache, bar=None) -> None:
    r = cache.records[-1]
    if bar is not None:
        bar.update(1)
    with writes_above_bars():
        log(f"  {name:<9} {'cached' if r.cached else 'done':<6} {r.seconds:7.1f} s  "
            + ", ".join(f"{k}={v}" for k, v in r.info.items() if not isinstance(v, (list, dict))))


def build_avatar(cfg: BuildConfig, log: Callable[[str], None] = print) -> BuildResult:
    """Runs (or resumes) the build ``cfg`` describes; one progress line per stage goes to ``log``."""
    t0 = time.monotonic()
    torch.set_num_threads(max(1, cfg.threads))
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise BuildError("--device cuda requested but torch sees no CUDA device")
    sources = probe_sources(cfg.videos)
    work = Path(cfg.work)
    cache = StageCache(work)
    atomic_write_text(work / "build.json", json.dumps({"videos": list(cfg.videos), "out": cfg.out,
                                                       "res": cfg.res, "quick": cfg.quick}, indent=1))
    with stages_bar() as stages:
        return _build(cfg, log, t0, sources, cache, stages)


def _build(cfg: BuildConfig, log, t0: float, sources, cache: StageCache, stages) -> BuildResult:
    tracks = track(cache, TrackInput(sources, cfg.track))
    _log_stage(log, "track", cache, stages)
    selection = select(cache, SelectInput(tracks, cfg.selection, cfg.holdout_fraction, cfg.holdout_blocks,
                                          cfg.track.frame_step))
    _log_stage(log, "select", cache, stages)
    whole = fit_whole_head(cache, WholeHeadInput(sources, tracks, selection, cfg.whole_head))
    _log_stage(log, "whole_head", cache, stages)
    mesh = build_mesh(cache, MeshInput(selection, cfg.closure, whole.shell, whole.key))
    _log_stage(log, "mesh", cache, stages)
    # Shared by basis, VAE and animation: computed once, passed explicitly.
    relaxed = target_relaxed_face(tracks, selection, cfg.regions)
    recombination = draw_recombination(selection, relaxed, cfg.regions, cfg.recombine)
    recombination_key = cfg.recombination_key()
    basis = fit_basis(cache, BasisInput(selection, recombination, cfg.basis, recombination_key))
    _log_stage(log, "basis", cache, stages)
    textures = unwrap_textures(cache, TexturesInput(sources, tracks, selection, mesh, cfg.res, cfg.unwrap,
                                                     hair_fill=whole.shell is not None))
    _log_stage(log, "textures", cache, stages)
    alpha = learn_alpha(cache, AlphaInput(tracks, selection, mesh, whole, cfg.res, cfg.unwrap, cfg.alpha))
    if alpha.atlas is not None:
        _log_stage(log, "alpha", cache)
    data = head_model_data(selection, textures, basis, mesh, recombination, cfg.regions, cfg.recombine,
                           cfg.train.batch, cfg.res)
    vae = train_head_model(cache, VaeInput(data, cfg.vae_config(basis.blendshapes.k), cfg.train, cfg.device,
                                           recombination_key, textures.key, basis.key))
    _log_stage(log, "vae", cache, stages)
    evaluation = evaluate(cache, EvaluateInput(vae, data, selection, basis, tracks))
    _log_stage(log, "evaluate", cache, stages)
    refinement = train_refinement_stage(cache, RefinementInput(
        sources, tracks, selection, basis, mesh, data, vae, whole, cfg.refinement, cfg.refinement_frames,
        cfg.whole_head.enabled, alpha.atlas, alpha.key))
    _log_stage(log, "refine", cache, stages)
    animation = train_animation_network(cache, AnimationInput(tracks, selection, basis, relaxed, recombination, data,
                                                              vae, cfg.animation, cfg.recombine, recombination_key))
    _log_stage(log, "animation", cache, stages)
    kind_maps = fit_kind_maps(cache, KindMapInput(tracks, selection, relaxed, recombination.point_weight))  # the avatar accepts expr52 too
    _log_stage(log, "kindmaps", cache)
    torso = fit_torso(cache, TorsoInput(sources, tracks, selection, cfg.torso))
    _log_stage(log, "torso", cache)
    te = time.monotonic()
    sheet = preview(PreviewInput(sources, tracks, selection, basis, mesh, textures, data, vae, torso))
    manifest = export(ExportInput(Path(cfg.out), sources, cfg.command, cfg.device, cfg.quick, cfg.train, selection,
                                  mesh, basis, textures, vae, evaluation, animation, tuple(cache.records), t0,
                                  whole, refinement, kind_maps, alpha, torso), sheet)
    stages.update(1)
    with writes_above_bars():
        log(f"  {'export':<9} {'done':<6} {time.monotonic() - te:7.1f} s")
    return BuildResult(Path(cfg.out), manifest, tuple(cache.records), time.monotonic() - t0)
