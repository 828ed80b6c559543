"""`headcast bench capture`: per-stage timing of the capture node on a video file.

Runs the real node (OpenCV decode → MediaPipe → features → encode → ZeroMQ PUB over tcp loopback)
as fast as the machine allows, with a real receiver bound on loopback so sending costs what it
costs in use. Reports p50/p95 per stage, end-to-end fps, frames with a face and capture→sent.
"""
from __future__ import annotations

import sys
from pathlib import Path

from capture.node import CaptureConfig, CaptureNode
from capture.sources import SourceConfig, SourceError
from capture.stats import format_table
from core.errors import HeadcastError
from streaming.protocol import FeatureKind
from streaming.receiver import Receiver, ReceiverConfig
from tools.bench_common import write_json

TARGET_FPS = 60.0
TARGET_CAPTURE_TO_SENT_P50_MS = 8.0


def register(bench_sub) -> None:
    p = bench_sub.add_parser("capture", help="capture node stage timings (decode, landmarks, features, encode+send)")
    p.add_argument("--source", required=True, metavar="VIDEO", help="video file (e.g. $(headcast samples --path WolfgangLanger_Pexels.mp4))")
    p.add_argument("--json", type=Path, required=True, metavar="FILE", help="write results here")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--feature", choices=["mp478", "deca2048"], default="mp478")
    p.add_argument("--deca-checkpoint", type=Path, metavar="PATH")
    p.add_argument("--neutral", type=Path, metavar="FILE", help="neutral face file (default: online estimate)")
    p.set_defaults(func=run)


def run(args) -> int:
    feature = FeatureKind.from_label(args.feature)
    if feature is FeatureKind.DECA2048 and args.deca_checkpoint is None:
        raise HeadcastError("--feature deca2048 needs --deca-checkpoint")
    with Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", history=1)) as rx:
        cfg = CaptureConfig(
            source=SourceConfig(args.source, max_frames=args.frames),
            endpoint=rx.bound_endpoint, stream_id="bench", feature=feature,
            deca_checkpoint=args.deca_checkpoint, neutral_file=args.neutral,
        )
        from core.progress import progress_bar

        try:
            with progress_bar(total=args.frames, desc="capture", unit="f") as bar:
                stats = CaptureNode(cfg).run(on_progress=lambda st: bar.update(st.frames - bar.n),
                                             progress_every_s=0.5)
        except (SourceError, ValueError) as exc:
            raise HeadcastError(str(exc)) from exc
        rx.wait_for(lambda r: "bench" in r.snapshot() and r.snapshot()["bench"].end_of_stream, 2.0)
        received = rx.snapshot().get("bench")
    summary = stats.summary()
    result = {
        "benchmark": "capture",
        "source": str(args.source),
        "feature": feature.label,
        **summary,
        "received": received.received if received else 0,
        "targets": {"fps": TARGET_FPS, "capture_to_sent_p50_ms": TARGET_CAPTURE_TO_SENT_P50_MS},
        "meets_targets": {
            "fps": summary["fps"] >= TARGET_FPS,
            "capture_to_sent_p50": (summary["capture_to_sent_ms"]["p50"] or 1e9) <= TARGET_CAPTURE_TO_SENT_P50_MS,
        },
    }
    print(format_table(summary))
    print(f"received by the loopback receiver: {result['received']} of {summary['sent']} messages")
    write_json(args.json, result)
    print(f"wrote {args.json}", file=sys.stderr)
    return 0
