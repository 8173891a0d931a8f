"""``benchmark bench [JOB]``: speed figures of the pipeline (DESIGN §10), with Quantus when installed."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

DEFAULT_JOB = Path(__file__).resolve().parents[2] / "jobs" / "bench.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="speed: images/s, passes, pipeline vs bare passes, Quantus side by side")
    parser.add_argument("job", nargs="?", default=str(DEFAULT_JOB), help="job spec (default: jobs/bench.yaml)")
    parser.add_argument("--images", type=int, help="number of images (synthetic datasets) / limit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    parser.add_argument("--no-quantus", action="store_true", help="skip the Quantus side-by-side run")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of each bare pass timing")
    parser.add_argument("--out", help="where the measured runs write their tables (default: a temporary folder)")
    parser.set_defaults(handler=bench)


def bench(args: argparse.Namespace) -> int:
    from ..bench import format_report, run_bench
    from ..config import load_job

    overrides = list(args.overrides)
    if args.images:
        overrides += [f"dataset.synthetic_images={args.images}", f"dataset.limit={args.images}"]
    spec = load_job(args.job, overrides)
    with tempfile.TemporaryDirectory(prefix="benchmark-bench-") as scratch:
        report = run_bench(spec, Path(args.out or scratch), with_quantus=not args.no_quantus, repeats=args.repeats)
    print(format_report(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0
