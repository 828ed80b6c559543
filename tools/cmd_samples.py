"""`headcast samples`: fetch, verify and locate the sample clips."""
from __future__ import annotations

from core.errors import HeadcastError
from tools import samples


def register(sub) -> None:
    p = sub.add_parser("samples", help="fetch the sample clips (sha256-checked) and print where they are")
    p.add_argument("--path", metavar="NAME", help="print only this clip's path (for scripts)")
    p.set_defaults(func=run)


def run(args) -> int:
    try:
        if args.path:
            print(samples.sample_path(args.path))
            return 0
        paths = samples.ensure_samples()
    except samples.SampleError as exc:
        raise HeadcastError(str(exc)) from exc
    print(f"sample clips in {samples.samples_dir()} (sha256 verified):")
    for name, path in paths.items():
        print(f"  {path}  — {samples.SAMPLES[name].description}")
    return 0
