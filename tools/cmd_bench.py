"""`headcast bench ...`: benchmarks are commands that print a table and write JSON."""
from __future__ import annotations

from tools.registry import register_all

# One module per benchmark; each exposes register(bench_subparsers).
BENCHMARKS = (
    "tools.bench_latency",
    "tools.bench_glass",
    "tools.bench_capture",
    "tools.bench_transport",
    "tools.bench_render",
    "tools.bench_inference",
    "tools.bench_web",
    "tools.bench_room",
)


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    bench_sub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    bench_sub.required = True
    register_all(bench_sub, BENCHMARKS)
