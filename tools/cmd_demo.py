"""`headcast demo`: the main job on the embedded default.

Today: a capture node streams the sample driver clip (a different person from the avatar's, which
is the point of the method) in real time over a real ZeroMQ socket into a render-side receiver,
and the live stream statistics are printed. It grows into the full avatar demo as the avatar,
engine and renderer land.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from capture.node import CaptureConfig, CaptureNode
from capture.sources import SourceConfig
from tools import samples
from tools.cmd_listen import collect, format_table
from tools.errors import CliError
from xr_runtime.receiver import Receiver, ReceiverConfig


def register(sub) -> None:
    p = sub.add_parser("demo", help="run the main job on the sample clips (make demo)")
    p.add_argument("--seconds", type=float, default=8.0, help="how long to stream")
    p.add_argument("--camera", type=int, metavar="INDEX", help="drive with your own face from this camera")
    p.add_argument("--json", type=Path, metavar="FILE", help="write the final statistics as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.camera is not None:
        spec = str(args.camera)
    else:
        try:
            spec = str(samples.sample_path(samples.DRIVER_CLIP))
        except samples.SampleError as exc:
            raise CliError(str(exc)) from exc
    receiver = Receiver(ReceiverConfig(endpoint="tcp://127.0.0.1:*", lost_after_s=1.0)).start()
    endpoint = receiver.bound_endpoint
    node = CaptureNode(CaptureConfig(
        source=SourceConfig(spec=spec, realtime=True, loop=args.camera is None),
        endpoint=endpoint, stream_id="driver",
    ))
    errors: list[BaseException] = []

    def capture():
        try:
            node.run()
        except BaseException as exc:  # reported below; the demo must not hang on a dead thread
            errors.append(exc)

    print(f"demo: capture node on {spec} → {endpoint} (stream 'driver'), {args.seconds:.0f} s", flush=True)
    thread = threading.Thread(target=capture, name="capture-node", daemon=True)
    thread.start()
    t_end = time.monotonic() + args.seconds
    try:
        while time.monotonic() < t_end and thread.is_alive():
            time.sleep(1.0)
            print(format_table(collect(receiver, 6)) + "\n", flush=True)
    finally:
        node.stop()
        thread.join(timeout=10)
        stats = collect(receiver, 6)
        receiver.stop()
    if errors:
        raise CliError(f"capture node failed: {errors[0]}")
    summary = node.stats.summary()
    print("capture node:", json.dumps({k: summary[k] for k in summary if k in ("frames", "face_frames", "fps", "sent")}))
    if args.json:
        from tools.bench_common import write_json

        write_json(args.json, {"receiver": stats, "capture": summary})
    driver = stats["streams"].get("driver")
    if not driver or driver["received"] == 0:
        raise CliError("no frames arrived at the receiver")
    print(f"demo: {driver['received']} frames received, {driver['dropped']} dropped, "
          f"{stats['malformed']} malformed")
    return 0
