"""What a build is asked to do (``BuildConfig``, its presets) and the builder's versions."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from core.errors import HeadcastError
from inference.animation import AnimationConfig
from inference.head_model.blendshapes import BasisConfig
from inference.head_model.face_regions import RecombineConfig, RegionSplit
from inference.head_model.frame_selection import SelectionConfig
from inference.head_model.head_closure import ClosureConfig
from inference.head_model.texture_unwrap import UnwrapConfig
from inference.head_model.tracking import TrackConfig
from inference.head_model.train_vae import TrainConfig
from inference.head_model.vae import VaeConfig
from inference.head_model.alpha_atlas import AlphaConfig
from inference.head_model.refinement import RefinementConfig
from inference.head_model.torso import TorsoConfig
from inference.head_model.whole_head import WholeHeadConfig

# Recorded in the manifest (5: packages carry the animation network; 6: regional recombination, the
# target's relaxed face per region (stored), held-out blocks; 7: the package carries the VAE decoder
# only, schema 2 — the encoder stays in the work directory). The cached default avatar is rebuilt
# when its version differs (from 6 to 7 that is a re-export: no stage changed).
# 8: the whole head — head mattes, a head shell carved from them (hair, ears, outline), its atlas
# strip a third of the texture, alpha (manifest ``whole_head`` block). 9: the expr52 map split at the
# mouth (kind_maps.face_bands): only the kindmaps stage reruns, so the default avatar's rebuild
# reuses every other stage of its work directory. 10: a whole head's unseen back takes the colour of
# the seen top of the head (texture_unwrap.hair_regions), mesh.glb an opaque head + outline fringe:
# textures and everything after them rerun. 11: the torso (shoulders and upper chest, where the clip
# shows them; manifest ``torso`` block) and mesh.glb's two-joint skin: a new stage, no other reruns.
BUILDER_VERSION = "11"


class BuildError(HeadcastError, RuntimeError):
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
    whole_head: WholeHeadConfig = field(default_factory=WholeHeadConfig)  # mattes + carved head shell
    refinement: RefinementConfig = field(default_factory=RefinementConfig)  # screen-space U-Net
    refinement_frames: int = 160  # training frames rendered for it (spread over the clip)
    alpha: AlphaConfig = field(default_factory=AlphaConfig)  # the shell's soft outline, from the mattes
    torso: TorsoConfig = field(default_factory=TorsoConfig)  # shoulders and upper chest, where the clip shows them

    @staticmethod
    def preset(videos, out, work, res: int | None = None, quick: bool = False, device: str = "cpu",
               adversarial: bool | None = None, steps: int | None = None, command: str = "",
               threads: int = 1, animation_steps: int | None = None,
               whole_head: bool = True) -> "BuildConfig":
        if quick:
            # First contact and tests: half the frames, a tiny texture, a short training run.
            cfg = BuildConfig(tuple(videos), str(out), str(work), res=res or 64, quick=True, device=device,
                              z_dim=16, hidden=128, n_basis=32, track=TrackConfig(frame_step=2),
                              closure=ClosureConfig(rings=16, blend_power=8.0) if whole_head
                              else ClosureConfig(rings=8),
                              train=TrainConfig(steps=150, batch=16, adversarial=False, checkpoint_seconds=1.0),
                              animation=AnimationConfig.quick(), command=command)
        else:
            cfg = BuildConfig(tuple(videos), str(out), str(work), res=res or 256, device=device, command=command,
                              train=TrainConfig(steps=800, batch=12),
                              closure=ClosureConfig(rings=24, blend_power=8.0) if whole_head else ClosureConfig())
        train = cfg.train
        if adversarial is not None:
            train = replace(train, adversarial=adversarial)
        if steps is not None:
            train = replace(train, steps=steps)
        animation = cfg.animation if animation_steps is None else replace(cfg.animation, steps=animation_steps)
        refinement = RefinementConfig(steps=100, size=64, width=12) if quick else RefinementConfig()
        return replace(cfg, train=train, threads=threads, animation=animation,
                       whole_head=WholeHeadConfig(enabled=whole_head), refinement=refinement,
                       alpha=AlphaConfig(enabled=whole_head), torso=TorsoConfig(enabled=whole_head),
                       refinement_frames=32 if quick else 160)

    @property
    def basis_size(self) -> int:
        return max(self.res // 2, 16)

    def vae_config(self, n_weights: int) -> VaeConfig:
        """The head model's VAE for a basis of ``n_weights`` blendshapes."""
        return VaeConfig(texture_size=self.res, n_weights=n_weights, z_dim=self.z_dim, hidden=self.hidden,
                         basis_size=self.basis_size, n_basis=self.n_basis)

    def recombination_key(self) -> dict:
        """The part of the basis, VAE and animation stage keys that fixes their shared donor pairs."""
        return {"regions": asdict(self.regions), "recombine": self.recombine.to_dict()}
