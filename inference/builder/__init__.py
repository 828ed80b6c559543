"""`headcast build-avatar`: monocular video(s) → avatar package, as a resumable staged pipeline.

Each stage is a function of a typed input to a typed result (frozen dataclasses), cached in the
work directory (cache.py); ``run.build_avatar`` chains them:

  stage      module          needs                                  gives
  track      track.py        sources, TrackConfig                   Tracks: landmarks, face found, hand over face
  select     select.py       Tracks                                 SelectedFrames: canonical faces, poses, kept,
                                                                    neutral, train / held-out frames
  mesh       mesh.py         SelectedFrames                         PersonalMesh: whole-head mesh, UV atlas
  (shared)   recombination   Tracks, SelectedFrames                 TargetRelaxedFace, Recombination (donor pairs)
  basis      basis.py        SelectedFrames, Recombination          Basis: K blendshapes, weights per frame
  textures   textures.py     sources, Tracks, SelectedFrames, mesh  Textures: unwrapped atlas per kept frame,
                                                                    neutral texture
  (shared)   vae.py          the above                              HeadModelData: the VAE's training data
  vae        vae.py          HeadModelData                          TrainedVae (checkpointed, resumes)
  evaluate   evaluate.py     TrainedVae, HeadModelData, Basis       Evaluation: held-out PSNR / SSIM /
                                                                    reprojection, decode timing
  animation  animation.py    Tracks, relaxed face, TrainedVae ...   TrainedAnimation: LSTM + residual encoder on
                                                                    mp478 features (the capture node's code
                                                                    path) against the VAE encoder's z
  export     export.py       everything                             preview.png and the atomic package write

The shared rows are not stages: cheap, deterministic, computed once per run and passed to every
stage that needs them (their configuration is in those stages' keys).
"""
from .config import BUILDER_VERSION, BuildConfig, BuildError
from .run import BuildResult, build_avatar

__all__ = ["BUILDER_VERSION", "BuildConfig", "BuildError", "BuildResult", "build_avatar"]
