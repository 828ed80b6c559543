"""`headcast bench inference`: p50/p95 of the animation window, the decoder and the whole engine step.

    headcast bench inference [--avatar DIR] --device cpu|cuda --avatars 1,2,4,8 [--res 256,512] --json FILE

Per avatar count and texture size it times

* ``lstm``: the animation network over one window (CPU: every avatar in turn; CUDA: all avatars
  stacked, captured in a CUDA graph, timed with CUDA events);
* ``decoder``: z → texture → RGBA8 (+ blendshape weights), likewise;
* ``step``: ``StreamingEngine.step`` end to end with a *new* frame for every stream each time (the
  CPU backend's cache never hits), from Python entry to outputs ready (CUDA: synchronised), host
  copies of the windows included.

Without ``--avatar`` every avatar is an untrained network of the default shape with the reference
decoder (inference/engine/reference_decoder.py) at each ``--res``; the output says so. With
``--avatar`` the package's own decoder and texture size are used (``--res`` is ignored) and its
animation network if the package carries one.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from core.errors import HeadcastError
from core.percentiles import percentiles
from tools.bench_common import write_json

TARGETS = {"cpu": {"avatars": 1, "res": 256, "p50_ms": 16.0},
           "cuda": [{"avatars": 1, "res": 512, "p50_ms": 1.0}, {"avatars": 8, "res": 512, "p50_ms": 4.0}]}


def register(sub) -> None:
    p = sub.add_parser("inference", help="animation network + decoder + engine step latency (CPU or CUDA)")
    p.add_argument("--avatar", type=Path, help="avatar package directory (default: reference decoder)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--avatars", default="1,2,4,8", help="comma-separated avatar counts")
    p.add_argument("--res", default="256,512", help="texture sizes without --avatar")
    p.add_argument("--decoder", default="reference", choices=("reference", "vae"),
                   help="without --avatar: the reference decoder, or the head model's VAE decoder "
                        "architecture (inference/head_model/vae.py, untrained, default VaeConfig)")
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=1, help="CPU backend torch threads (engine default 1)")
    p.add_argument("--cpu-precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--json", type=Path, help="write results here")
    p.set_defaults(func=run)


def _counts(text: str) -> list[int]:
    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise HeadcastError(f"expected comma-separated integers, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise HeadcastError(f"expected positive integers, got {text!r}")
    return vals


def _package_avatar(path: Path, seed: int):
    from inference.engine.package_loader import load_avatar_model

    try:
        return load_avatar_model(path, allow_untrained=True, seed=seed)
    except ValueError as exc:  # AvatarPackageError is a ValueError: name the problem, no traceback
        raise HeadcastError(str(exc)) from None


def _seeded(module, seed: int):
    """Random small parameters so an untrained decoder does real arithmetic (zeros could be skipped)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.01)
    return module


def _frames(stream_ids, n, feature_dim, seed=0):
    from streaming.protocol import FeatureFrame, FeatureKind

    kind = FeatureKind.MP478 if feature_dim == 1434 else FeatureKind.DECA2048
    shape = (478, 3) if feature_dim == 1434 else (2048, 1)
    rng = np.random.default_rng(seed)
    feats = rng.normal(0, 0.3, (n,) + shape).astype(np.float32)
    return {sid: [FeatureFrame(sid, i, kind, feats[(i + j) % n], 0, 0) for i in range(n)]
            for j, sid in enumerate(stream_ids)}


def _time_cpu_parts(engine, iters: int) -> tuple[list[float], list[float]]:
    import torch

    from inference.animation.train import torch_threads
    from inference.engine.model import animate, to_rgba8

    be = engine.backend
    lstm, dec = [], []
    with torch_threads(be.threads), torch.inference_mode():
        for _ in range(iters):
            t0 = time.perf_counter()
            zs = []
            for i, m in enumerate(be.models):
                x = torch.from_numpy(engine.states[engine.stream_ids[i]].window)[None]
                zs.append(animate(be.params[i], x, m.net.config.arch, m.net.config.layers))
            t1 = time.perf_counter()
            for i, m in enumerate(be.models):
                tex, w = m.decoder(zs[i])
                to_rgba8(tex)[0].numpy()
                w.numpy()
            t2 = time.perf_counter()
            lstm.append((t1 - t0) * 1e3)
            dec.append((t2 - t1) * 1e3)
    return lstm, dec


def _time_cuda_graph(fn, iters: int, stream) -> list[float]:
    import torch

    with torch.no_grad(), torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    stream.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g, stream=stream):
        fn()
    times = []
    with torch.cuda.stream(stream):
        for _ in range(iters):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(stream)
            g.replay()
            b.record(stream)
            b.synchronize()
            times.append(a.elapsed_time(b))
    return times


def _time_cuda_parts(engine, iters: int) -> tuple[list[float], list[float]]:
    import torch

    from inference.engine.model import animate, to_rgba8

    lstm, dec = [], []
    for _, batch in engine.backend.groups:
        z_buf = torch.empty_like(batch.z_hold)

        def run_lstm():
            z_buf.copy_(animate(batch.params, batch.x, batch.arch, batch.layers))

        rgba = torch.empty_like(batch.rgba)
        w_buf = torch.empty_like(batch.weights)

        def run_dec():
            tex, w = batch._decode(z_buf)
            rgba.copy_(to_rgba8(tex))
            w_buf.copy_(w)

        lstm.append(_time_cuda_graph(run_lstm, iters, batch.stream))
        dec.append(_time_cuda_graph(run_dec, iters, batch.stream))
    return [float(sum(v)) for v in zip(*lstm)], [float(sum(v)) for v in zip(*dec)]


def bench_case(n: int, res: int | None, args, avatar_source) -> dict:
    from inference.engine.engine import EngineConfig, StreamingEngine

    models, note = avatar_source(n, res)
    sids = [f"s{i}" for i in range(n)]
    engine = StreamingEngine(dict(zip(sids, models)), EngineConfig(
        device=args.device, threads=args.threads, cpu_precision=args.cpu_precision))
    feature_dim = models[0].feature_dim
    frames = _frames(sids, 64, feature_dim)
    t = 10**12
    step_ms = []
    for k in range(args.warmup + args.iters):
        t += 11_111_111  # 90 Hz render loop, a new frame every step (worst case)
        batch = {sid: [frames[sid][k % 64]] for sid in sids}
        t0 = time.perf_counter()
        engine.step(batch, now_ns=t)
        if k >= args.warmup:
            step_ms.append((time.perf_counter() - t0) * 1e3)
    if args.device == "cpu":
        lstm, dec = _time_cpu_parts(engine, args.iters)
    else:
        lstm, dec = _time_cuda_parts(engine, args.iters)
    decoder = models[0].decoder
    texture = int(getattr(decoder, "texture_size", 0) or getattr(getattr(decoder, "cfg", None), "texture_size", 0)
                  or res or 0)
    return {"avatars": n, "res": texture, "note": note, "lstm_ms": percentiles(lstm),
            "decoder_ms": percentiles(dec), "step_ms": percentiles(step_ms)}


def run(args) -> int:
    import torch

    counts = _counts(args.avatars)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise HeadcastError("--device cuda: no CUDA device (torch.cuda.is_available() is False)")
    if args.avatar is not None:
        def source(n, res):
            pairs = [_package_avatar(args.avatar, seed=i) for i in range(n)]
            return [p[0] for p in pairs], pairs[0][1]
        resolutions = [None]
        print(f"avatar package: {args.avatar}")
    else:
        from inference.engine.reference_avatar import reference_avatar

        def source(n, res):
            if args.decoder == "vae":
                from inference.head_model.vae import Decoder, VaeConfig

                cfg = VaeConfig(texture_size=res, basis_size=min(VaeConfig().basis_size, res))
                return ([reference_avatar(res, z_dim=cfg.z_dim, seed=i, decoder=_seeded(Decoder(cfg), i))
                         for i in range(n)],
                        "head-model VAE decoder architecture (untrained) + untrained animation network")
            return ([reference_avatar(res, seed=i) for i in range(n)],
                    "reference decoder + untrained animation network of default shape (no --avatar)")
        resolutions = _counts(args.res)
        which = ("the head model's VAE decoder architecture (untrained)" if args.decoder == "vae"
                 else "reference decoder (inference/engine/reference_decoder.py)")
        print(f"no --avatar: {which} and an untrained animation network of the default shape; "
              "timings only, no quality")
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu x{args.threads} threads ({args.cpu_precision})"
    results = []
    header = f"{'avatars':>7} {'res':>5} | {'lstm p50':>9} {'p95':>7} | {'decoder p50':>11} {'p95':>7} | {'step p50':>9} {'p95':>7}"
    print(f"device: {device_name}")
    print(header)
    print("-" * len(header))
    last_note = None
    from core.progress import progress_bar, writes_above_bars

    with progress_bar(total=len(resolutions) * len(counts), desc="inference", unit="case") as bar:
        for res in resolutions:
            for n in counts:
                r = bench_case(n, res, args, source)
                results.append(r)
                bar.update(1)
                with writes_above_bars():
                    if r["note"] != last_note:
                        print(f"  ({r['note']})")
                        last_note = r["note"]
                    print(f"{r['avatars']:>7} {r['res']:>5} | {r['lstm_ms']['p50']:>9.3f} {r['lstm_ms']['p95']:>7.3f} | "
                          f"{r['decoder_ms']['p50']:>11.3f} {r['decoder_ms']['p95']:>7.3f} | "
                          f"{r['step_ms']['p50']:>9.3f} {r['step_ms']['p95']:>7.3f}")
    if args.json:
        write_json(args.json, {"benchmark": "inference", "device": args.device, "device_name": device_name,
                               "avatar": str(args.avatar) if args.avatar else None,
                               "cpu_precision": args.cpu_precision, "threads": args.threads,
                               "torch": torch.__version__, "targets": TARGETS[args.device],
                               "results": results})
        print(f"wrote {args.json}")
    return 0
