"""``benchmark bench [JOB]``: speed figures of the pipeline (DESIGN §10), with Quantus when installed."""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

DEFAULT_JOB = Path(__file__).resolve().parents[2] / "jobs" / "bench.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="speed: images/s, passes, pipeline vs bare passes; the plain loop and Quantus side by side")
    parser.add_argument("job", nargs="?", default=str(DEFAULT_JOB), help="job spec (default: jobs/bench.yaml)")
    parser.add_argument("--images", type=int, help="number of images (synthetic datasets) / limit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", dest="json_path", help="also write the figures as JSON here")
    parser.add_argument("--no-quantus", action="store_true", help="skip the Quantus side-by-side run")
    parser.add_argument("--no-loop", action="store_true", help="skip the plain Captum / zennit / skimage loop")
    parser.add_argument("--runs", type=int, default=1,
                        help="side-by-side runs of the pipeline and each peer (and of each grid setting); medians")
    parser.add_argument("--profile", action="store_true",
                        help="break the pipeline time into passes by kind, metrics, occlusion, transfers, writing")
    parser.add_argument("--grid", action="store_true",
                        help="the probed default settings against every chunk size (8-64) x memory layout")
    parser.add_argument("--models", help="grid: comma-separated models (default: the job's)")
    parser.add_argument("--sizes", help="grid: comma-separated input sizes (default: the job's)")
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
        out = Path(args.out or scratch)
        if args.grid:
            from ..bench.grid import format_grid, run_grid

            models = args.models.split(",") if args.models else [spec.model.name]
            sizes = [int(size) for size in args.sizes.split(",")] if args.sizes else [spec.dataset.crop]
            report: object = run_grid(spec, out, models, sizes, runs=max(1, args.runs))
            print(format_grid(report))
        else:
            report = run_bench(spec, out, with_quantus=not args.no_quantus, repeats=args.repeats,
                               with_loop=not args.no_loop, profile=args.profile, runs=max(1, args.runs))
            print(format_report(report))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(report, indent=2))
    return 0
