"""``benchmark report OUT``: one self-contained HTML page (manifest, figures, tables, tau, errors)."""

from __future__ import annotations

import argparse
import sys

from .plot import add_plot_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="one self-contained HTML page: manifest, figures, tables, errors")
    parser.add_argument("out", help="output URI of the run")
    add_plot_options(parser)
    parser.set_defaults(handler=report)


def report(args: argparse.Namespace) -> int:
    from ..results.plots import FORMATS, plot_all
    from ..results.report import build_report, write_report
    from .plot import prepare

    results, aggregates, options, meta = prepare(args, FORMATS, "report")
    figures = plot_all(results, aggregates, options, progress=not args.no_progress, keep_png=True)
    path = write_report(results, build_report(results, aggregates, figures, meta))
    print(f"{len(figures)} figures embedded", file=sys.stderr)
    print(path)
    return 0
