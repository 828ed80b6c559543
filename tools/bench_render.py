"""`headcast bench render`: what each avatar costs the render loop, per stage, against the empty scene.

Avatars with a learned alpha (whole-head packages) are drawn in a second, blended pass as well;
``--alpha both`` (the default) measures them and opaque ones side by side in the same run.
``--refine both`` adds the screen-space refinement (gl/refinement_pass.py; the full build's
network size, 128², width 16) to every avatar and measures it against the same scene without, in
the same run: on the CUDA path where CUDA-GL interop works, else the CPU path. ``--torso both``
puts a bust of the builder's topology under every head and measures it against the same scene
without (one more draw call per avatar and eye, and the body-weight attribute).
Every avatar gets a new texture and new weights every frame (the worst case: a live stream per
avatar at the display rate), so upload cost is included. Stages are timed with a glFinish after
each (`sync_timings`): on an asynchronous GL the CPU-side call times would otherwise hide GPU
work in whichever call happens to wait. Ratios are p50 against the 0-avatar scene of the same run.
"""
from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import numpy as np

from core.errors import HeadcastError
from core.percentiles import percentiles
from tools.bench_common import write_json

STAGES = ("sample", "upload", "draw_eye0", "draw_eye1", "submit", "frame")


def register(sub) -> None:
    p = sub.add_parser("render", help="render loop cost per frame for 0/1/4/8 avatars (ratios vs empty scene)")
    p.add_argument("--json", type=Path, required=True, metavar="FILE")
    p.add_argument("--backend", default="headless", choices=["headless"])
    p.add_argument("--avatars", default="0,1,4,8", help="avatar counts, comma-separated (0 is always added)")
    p.add_argument("--frames", type=int, default=120, help="measured frames per count (after 10 warm-up)")
    p.add_argument("--size", default="640x480", metavar="WxH", help="eye size (two eyes)")
    p.add_argument("--texture", type=int, default=256, help="avatar texture size (square)")
    p.add_argument("--textures-on", default="host", choices=["host", "cuda"],
                   help="where the avatar textures live: numpy (host upload) or CUDA tensors (CUDA-GL interop)")
    p.add_argument("--egl", default="surfaceless", choices=["surfaceless", "device"],
                   help="EGL platform (device: NVIDIA headless, needed for CUDA-GL interop)")
    p.add_argument("--samples", type=int, default=0, metavar="N",
                   help="MSAA samples of the eye framebuffers (0 = off, the headless default; OpenXR eyes "
                        "default to the measured choice in docs/BENCHMARKS.md)")
    p.add_argument("--upload", default="auto", choices=["auto", "direct", "pbo"],
                   help="host texture upload: auto = the faster of direct / PBO, calibrated at start-up")
    p.add_argument("--alpha", default="both", choices=["soft", "opaque", "both"],
                   help="avatar textures with a learned alpha (the soft-outline second pass: whole-head "
                        "packages), opaque ones (one pass), or both side by side (default)")
    p.add_argument("--refine", default="off", choices=["off", "on", "both"],
                   help="the screen-space refinement on every avatar (on), off (default), or both side by side")
    p.add_argument("--torso", default="off", choices=["off", "on", "both"],
                   help="a torso on every avatar (shoulders and upper chest, drawn with the body transform: "
                        "avatars built from a clip that shows the shoulders), or both side by side")
    p.set_defaults(func=run)


def bench_torso(mesh):
    """``mesh`` with a bust of the builder's topology (head_model/torso.py, 24 rings × 48) under it
    and its lowest tenth weighted to the body: what an avatar built from a clip that shows the
    shoulders costs the renderer (one more draw call per avatar and eye, a body-weight attribute)."""
    from dataclasses import replace

    from inference.head_model.torso import TorsoProfile, torso_mesh
    from xr_runtime.avatars.mesh import TorsoMeshData

    p = mesh.positions
    lo, hi = float(p[:, 1].min()), float(p[:, 1].max())
    h = hi - lo
    ys = np.linspace(lo + 0.05 * h, lo - 0.9 * h, 24)
    a = np.minimum(0.25 * h + 2.0 * (lo + 0.05 * h - ys), 1.2 * h)
    profile = TorsoProfile(ys, a, np.minimum(0.5 * a, 0.35 * h), np.zeros(24), np.zeros(24), np.zeros(24, bool),
                           float(ys[6]), 2.6)
    t = torso_mesh(profile, 48)
    texture = np.full((128, 128, 3), 40, np.uint8)
    body = np.clip((lo + 0.1 * h - p[:, 1]) / (0.1 * h), 0, 1).astype(np.float32)
    return replace(mesh, body_weights=body, torso=TorsoMeshData(t.positions, t.uvs, t.faces, texture))


class CyclingSource:
    """A new texture and new weights every call, from a few prebuilt textures (no generation cost)."""

    def __init__(self, texture_size: int, k: int, cuda: bool = False, soft: bool = True) -> None:
        rng = np.random.default_rng(0)
        self.textures = [rng.integers(0, 255, (texture_size, texture_size, 4), dtype=np.uint8) for _ in range(4)]
        for t in self.textures:
            if soft:  # a whole head's learned alpha: opaque face, a soft band (a quarter of the texels)
                t[..., 3] = np.where(t[..., 3] < 64, t[..., 3] * 4, 255)
            else:
                t[..., 3] = 255
        self.stream = None
        if cuda:
            import torch

            self.textures = [torch.from_numpy(t).cuda().contiguous() for t in self.textures]
            self.stream = torch.cuda.current_stream().cuda_stream
        self.k = k
        self.serial: dict[str, int] = {}

    def latest(self, stream_id: str, t_display_ns: int):
        from xr_runtime.avatars.state import AvatarFrameState

        n = self.serial.get(stream_id, 0) + 1
        self.serial[stream_id] = n
        w = np.full(self.k, 0.5 + 0.5 * math.sin(n * 0.1), np.float32)
        now = time.monotonic_ns()
        return AvatarFrameState(self.textures[n % 4], w, t_state_ns=now, t_ready_ns=now, texture_serial=n,
                                cuda_stream=self.stream)


def measure(count: int, frames: int, size: tuple[int, int], texture_size: int, cuda: bool = False,
            egl: str = "surfaceless", samples: int = 0, upload: str = "auto", soft: bool = True,
            refine: bool = False, torso: bool = False) -> dict:
    from xr_runtime.avatars.assets import AvatarAssets
    from xr_runtime.avatars.dev_source import dev_head_mesh
    from xr_runtime.avatars.sampler import SamplerConfig
    from xr_runtime.backends.headless import HeadlessBackend, HeadlessConfig
    from xr_runtime.gl.egl_context import GLContextConfig
    from xr_runtime.render_node import RenderNode, RenderNodeConfig
    from xr_runtime.scene.scene_file import AvatarSlot, Scene, Transform

    mesh = dev_head_mesh(rows=48, cols=40)  # ~1.9k vertices, 3.6k triangles: a light head mesh
    if torso:
        mesh = bench_torso(mesh)
    slots = [AvatarSlot(Path(f"a{i}"), f"s{i}", Transform(((i % 4 - 1.5) * 0.25, 1.4 + 0.3 * (i // 4), -1.2)))
             for i in range(count)]
    neutral = np.full((texture_size, texture_size, 4), 128, np.uint8)
    neutral[..., 3] = 128 if soft else 255  # the render node reads "has a learned alpha" off the idle texture
    refinement = None
    if refine:
        from inference.head_model.refinement import RefinementConfig, RefineNet

        cfg = RefinementConfig()
        refinement = (RefineNet(cfg.width).eval(), cfg)  # its cost does not depend on its weights
    assets = [AvatarAssets(mesh, neutral, refinement=refinement) for _ in range(count)]
    node = RenderNode(Scene(slots), assets, CyclingSource(texture_size, mesh.blendshape_count, cuda, soft),
                      RenderNodeConfig(sampler=SamplerConfig(fade_s=0.0), sync_timings=True, upload_method=upload,
                                       refinement="on" if refine else "off"))
    backend = HeadlessBackend(HeadlessConfig(width=size[0], height=size[1], stereo=True, paced=False, samples=samples,
                                             gl=GLContextConfig(display=egl, cuda_device=0 if egl == "device" else None)))
    node.run(backend, max_frames=frames + 10)
    records = list(node.stats.records)[10:]
    out = {"sample": percentiles([r.sample for r in records]), "upload": percentiles([r.upload for r in records]),
           "draw_eye0": percentiles([r.draw_eyes[0] for r in records]),
           "draw_eye1": percentiles([r.draw_eyes[1] for r in records]),
           "submit": percentiles([r.submit for r in records]), "frame": percentiles([r.frame for r in records])}
    uploads = node.summary()["uploads"]
    out["uploads"] = {k: uploads[k] for k in ("host", "host_pbo", "cuda", "cuda_to_host", "interop_disabled",
                                              "host_methods", "calibration")}
    out["gl_renderer"] = node.backend_stats.info.get("gl_renderer")
    if refine:
        out["refinement"] = node.summary()["refinement"]
    return out


def run(args) -> int:
    try:
        counts = sorted({0} | {int(v) for v in args.avatars.split(",") if v.strip()})
        w, h = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        raise HeadcastError("--avatars takes integers like 0,1,4,8; --size looks like 640x480") from None
    if any(c < 0 or c > 64 for c in counts):
        raise HeadcastError("avatar counts must lie in 0..64")
    if args.samples < 0:
        raise HeadcastError("--samples must be 0 or more")
    from core.progress import progress_bar

    modes = {"both": (True, False), "soft": (True,), "opaque": (False,)}[args.alpha]
    refine_modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.refine]
    torso_modes = {"off": (False,), "on": (True,), "both": (False, True)}[args.torso]
    results, opaque, refined, torsos = {}, {}, {}, {}
    cases = list(itertools.product(counts, modes, refine_modes, torso_modes))
    with progress_bar(total=len(cases), desc="render", unit="case") as bar:
        for c, soft, refine, torso in cases:
            bar.update(1)
            if torso and args.torso == "both" and (refine or not soft or c == 0):
                continue  # the torso's cost: measured on the soft, unrefined avatars
            r = measure(c, args.frames, (w, h), args.texture, args.textures_on == "cuda", args.egl,
                        args.samples, args.upload, soft, refine and c > 0, torso and c > 0)
            if torso and args.torso == "both":
                torsos[c] = r
            elif refine and args.refine == "both":
                if soft and c > 0:
                    refined[c] = r
            else:
                (results if soft or args.alpha == "opaque" else opaque)[c] = r
    base = results[0]
    ratios = {c: {s: (r[s]["p50"] / base[s]["p50"]) if base[s]["p50"] > 0 else None for s in STAGES}
              for c, r in results.items()}
    header = f"{'avatars':>7} " + " ".join(f"{s + ' ms':>13}" for s in STAGES) + f" {'frame/empty':>11}"
    last = {k: v for k, v in results[counts[-1]]["uploads"].items() if k != "calibration"}
    calibration = results[counts[-1]]["uploads"]["calibration"]
    lines = [f"render loop, {w}x{h} per eye, stereo, texture {args.texture}² on {args.textures_on}, p50 ms "
             f"(glFinish per stage), MSAA {args.samples}, GL: {base['gl_renderer']}; uploads at {counts[-1]} avatars: {last}", header]
    for c, r in results.items():
        lines.append(f"{c:>7} " + " ".join(f"{r[s]['p50']:>13.3f}" for s in STAGES) + f" {ratios[c]['frame']:>11.2f}")
    if opaque:
        lines.append(f"{'opaque':>7} (one pass, no learned alpha): frame p50 ms, and the soft second pass's cost")
        for c, r in opaque.items():
            soft_ms, one_ms = results[c]["frame"]["p50"], r["frame"]["p50"]
            lines.append(f"{c:>7} frame {one_ms:8.3f} ms; with the soft pass {soft_ms:8.3f} ms "
                         f"({soft_ms / one_ms if one_ms > 0 else float('nan'):.2f}x)")
    if refined:
        lines.append(f"{'refined':>7} (screen-space refinement, 128² width 16, per eye): frame p50 ms against the same "
                     "avatars without it")
        for c, r in refined.items():
            ref_ms, base_ms = r["frame"]["p50"], results[c]["frame"]["p50"]
            info = r["refinement"]
            lines.append(f"{c:>7} frame {base_ms:8.3f} ms; refined {ref_ms:8.3f} ms ({ref_ms / base_ms:.2f}x, "
                         f"{1e3 / ref_ms:.0f} Hz); path {sorted(set(info['paths'].values()))}, correction p50 "
                         f"{info['correction_ms_p50']} ms per eye")
    if torsos:
        lines.append(f"{'torso':>7} (a bust under every head, 1.2k vertices, drawn with the body transform): frame "
                     "p50 ms against the same avatars without it")
        for c, r in torsos.items():
            t_ms, base_ms = r["frame"]["p50"], results[c]["frame"]["p50"]
            lines.append(f"{c:>7} frame {base_ms:8.3f} ms; with a torso {t_ms:8.3f} ms ({t_ms / base_ms:.2f}x)")
    for size, cal in calibration.items():
        lines.append(f"upload calibration {size}: " + ", ".join(f"{m} {ms:.3f} ms" for m, ms in cal["ms"].items())
                     + f" → {cal['choice']}")
    print("\n".join(lines))
    write_json(args.json, {"benchmark": "render", "backend": args.backend, "eye_size": [w, h], "stereo": True,
                           "textures_on": args.textures_on, "egl": args.egl, "samples": args.samples,
                           "upload": args.upload,
                           "texture_size": args.texture, "frames": args.frames, "sync_timings": True,
                           "alpha": args.alpha, "results": {str(c): r for c, r in results.items()},
                           "results_opaque": {str(c): r for c, r in opaque.items()},
                           "refine": args.refine, "results_refined": {str(c): r for c, r in refined.items()},
                           "torso": args.torso, "results_torso": {str(c): r for c, r in torsos.items()},
                           "ratios_vs_empty_p50": {str(c): r for c, r in ratios.items()}})
    return 0
