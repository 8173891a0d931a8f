"""``benchmark aggregate OUT``: means, standard deviations and bootstrap CIs over images,
occlusion curves, method rankings and Kendall's tau, written to ``OUT/aggregates/``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("aggregate", help="aggregate tables with 95%% CIs, rankings and Kendall's tau")
    parser.add_argument("out", help="output URI of the run")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--confidence", type=float, default=0.95, help="confidence level of the CIs (default 0.95)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=aggregate)


def aggregate(args: argparse.Namespace) -> int:
    from ..cli.main import UserError
    from ..results.aggregate import compute_aggregates, write_aggregates
    from ..results.query import open_results
    from ..results.statistics import BootstrapSettings

    if args.resamples < 1 or not 0 < args.confidence < 1:
        raise UserError("--resamples must be >= 1 and --confidence in (0, 1)")
    results = open_results(args.out)
    settings = BootstrapSettings(args.resamples, args.confidence, args.seed)
    print(results.state(), file=sys.stderr)
    if results.committed and not results.complete:
        print("warning: the run is incomplete; aggregates cover the committed shards only", file=sys.stderr)
    tables = compute_aggregates(results, settings, progress=not args.no_progress)
    write_aggregates(results, tables, settings)
    for name, table in tables.items():
        print(f"  {results.store.display(f'aggregates/{name}.parquet')}  ({table.num_rows} rows)")
    print(headline(tables))
    return 0


def headline(tables: dict) -> str:
    """The paper's gap as one line per model and dataset."""
    from ..results.report import gap_sentences

    lines = gap_sentences(tables.get("rank_agreement"))
    return "\n".join(lines) if lines else "no rank agreement (needs both randomization and occlusion results)"
