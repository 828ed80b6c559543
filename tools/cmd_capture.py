"""`headcast capture`: run a capture node (camera, video or image directory → features → ZeroMQ)."""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import zmq

from calibration.clock_service import clock_endpoint_for
from calibration.neutral import NeutralError
from capture.node import CaptureConfig, CaptureNode
from capture.sources import SourceConfig, SourceError
from capture.stats import format_table
from core.errors import HeadcastError
from streaming.protocol import FeatureKind, validate_stream_id
from streaming.sockets import InsecureBindError
from tools.net_args import add_client_args, curve_client_from_args


def register(sub) -> None:
    p = sub.add_parser("capture", help="track a face and stream expression features to a render node")
    p.add_argument("--source", required=True, metavar="CAMERA_INDEX|VIDEO|IMAGE_DIR",
                   help="camera index (0), video file, or directory of images (sorted by name)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--connect", metavar="ENDPOINT", help="render node endpoint to connect to (tcp://HOST:PORT)")
    where.add_argument("--bind", metavar="ENDPOINT", help="bind here instead and let render nodes connect")
    p.add_argument("--insecure", action="store_true", help="with --bind: allow a non-loopback address without CURVE")
    p.add_argument("--stream", required=True, metavar="ID", help="stream id (1-32 of A-Z a-z 0-9 _ . -)")
    p.add_argument("--realtime", action="store_true", help="pace files at their frame rate (default: as fast as possible)")
    p.add_argument("--loop", action="store_true", help="restart files at their end")
    p.add_argument("--frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--neutral", type=Path, metavar="FILE",
                   help="driver neutral face (headcast calibrate neutral); without it the node estimates one online")
    p.add_argument("--save-neutral", type=Path, metavar="FILE",
                   help="at the end, write the neutral in use and the expression range learned this session "
                        "(reuse with --neutral)")
    p.add_argument("--record", type=Path, metavar="FILE", help="also write the exact stream to FILE (headcast replay)")
    p.add_argument("--stats", action="store_true", help="print per-stage timing at the end")
    p.add_argument("--stats-json", type=Path, metavar="FILE", help="write the timing summary as JSON")
    p.add_argument("--feature", choices=["mp478", "deca2048", "expr52"], default="mp478",
                   help="feature kind (default mp478; expr52: the 52 ARKit blendshape weights + confidences)")
    p.add_argument("--emit-livelink", metavar="HOST:PORT", action="append", default=[],
                   help="also send Live Link Face UDP packets there (Unreal / MetaHuman; port 11111)")
    p.add_argument("--emit-vmc", metavar="HOST:PORT", action="append", default=[],
                   help="also send VMC protocol OSC there (VSeeFace and VMC receivers; port 39539)")
    p.add_argument("--emit-osc", metavar="HOST:PORT", action="append", default=[],
                   help="also send Unified-Expressions avatar parameters there (VRChat OSC; port 9000)")
    p.add_argument("--deca-checkpoint", type=Path, metavar="PATH", help="deca_model.tar for --feature deca2048")
    p.add_argument("--clock", default="auto", metavar="ENDPOINT|auto|off",
                   help="render node's clock service for in-band clock calibration "
                        "(auto: the --connect port + 1)")
    p.add_argument("--optical-marker", action="store_true",
                   help="read the render node's optical frame counter off each frame (headcast bench glass)")
    add_client_args(p)
    p.set_defaults(func=run)


def build_config(args) -> CaptureConfig:
    try:
        validate_stream_id(args.stream)
    except ValueError as exc:
        raise HeadcastError(str(exc)) from exc
    if args.frames is not None and args.frames < 1:
        raise HeadcastError("--frames must be at least 1")
    if args.insecure and not args.bind:
        raise HeadcastError("--insecure only applies with --bind")
    feature = FeatureKind.from_label(args.feature)
    if feature is FeatureKind.DECA2048 and args.deca_checkpoint is None:
        raise HeadcastError("--feature deca2048 needs --deca-checkpoint deca_model.tar (DECA's weights are not shipped)")
    if args.bind and (args.server_key or args.client_key):
        raise HeadcastError("CURVE keys apply to --connect; a binding capture node supports only loopback or --insecure")
    curve = curve_client_from_args(args) if args.connect else None
    clock = None
    if args.clock == "auto":
        if args.connect and args.connect.startswith("tcp://"):
            try:
                clock = clock_endpoint_for(args.connect)
            except ValueError:
                clock = None
    elif args.clock != "off":
        clock = args.clock
    return CaptureConfig(
        clock_endpoint=clock,
        source=SourceConfig(args.source, realtime=args.realtime, loop=args.loop, max_frames=args.frames),
        endpoint=args.connect or args.bind,
        stream_id=args.stream,
        bind=bool(args.bind),
        insecure=args.insecure,
        curve_client=curve,
        feature=feature,
        deca_checkpoint=args.deca_checkpoint,
        neutral_file=args.neutral, save_neutral=args.save_neutral,
        record_file=args.record,
        detect_optical_marker=args.optical_marker,
        emitters=_emitters(args),
    )


def _emitters(args) -> tuple:
    from capture.interop.common import parse_host_port
    from capture.interop.livelink import LiveLinkSender
    from capture.interop.osc import OscSender

    out = []
    try:
        for spec in getattr(args, "emit_livelink", []):
            out.append(LiveLinkSender(*parse_host_port(spec)))
        for spec in getattr(args, "emit_vmc", []):
            out.append(OscSender(*parse_host_port(spec), mode="vmc"))
        for spec in getattr(args, "emit_osc", []):
            out.append(OscSender(*parse_host_port(spec), mode="unified"))
    except ValueError as exc:
        for e in out:
            e.close()
        raise HeadcastError(f"--emit-*: {exc}") from exc
    return tuple(out)


def run(args) -> int:
    config = build_config(args)
    node = CaptureNode(config)
    # SIGTERM ends the stream cleanly (end-of-stream frame, recording closed) like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, lambda *_: node.stop())
    try:
        progress = None
        if args.stats:
            progress = lambda st: print(format_table(st.summary()) + "\n", file=sys.stderr)  # noqa: E731
        stats = node.run(on_progress=progress)
    except (SourceError, NeutralError, InsecureBindError) as exc:
        raise HeadcastError(str(exc)) from exc
    except ValueError as exc:  # bad endpoint strings, DECA checkpoint refused
        raise HeadcastError(str(exc)) from exc
    except zmq.ZMQError as exc:  # malformed endpoint, address in use, unknown host
        raise HeadcastError(f"cannot use endpoint {config.endpoint}: {exc}") from exc
    except OSError as exc:  # e.g. --record into a directory we may not write
        raise HeadcastError(f"{exc.filename or ''}: {exc.strerror or exc}") from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = stats.summary()
    if args.stats:
        print(format_table(summary), file=sys.stdout)
    if args.stats_json:
        args.stats_json.write_text(json.dumps(summary, indent=2))
    return 0
