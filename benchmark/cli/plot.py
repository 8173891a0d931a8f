"""``benchmark plot OUT``: the paper's figures as PNG and PDF under ``OUT/figures/``."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("plot", help="the paper's figures (PNG and PDF) under OUT/figures/")
    parser.add_argument("out", help="output URI of the run")
    add_plot_options(parser)
    parser.set_defaults(handler=plot)


def add_plot_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``plot`` and ``report``."""
    parser.add_argument("--all-variants", action="store_true",
                        help="randomization figures for every normalization and signed/abs, not only the paper's")
    parser.add_argument("--map-images", type=int, default=4, help="heatmap grids for at most this many saved images")
    parser.add_argument("--max-stages", type=int, default=8, help="stage columns of a heatmap grid")
    parser.add_argument("--refresh", action="store_true", help="recompute the aggregates even when they are current")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def prepare(args: argparse.Namespace, formats: tuple[str, ...], verb: str = "plot"):
    """Open the run, load (or compute) its aggregates and the plot options."""
    from ..results.aggregate import load_aggregates
    from ..results.plots import PlotOptions
    from ..results.query import open_results

    results = open_results(args.out)
    results.require_committed(verb)
    print(results.state(), file=sys.stderr)
    aggregates, computed = load_aggregates(results, progress=not args.no_progress, refresh=args.refresh)
    if computed:
        print(f"aggregates computed and written to {results.store.display('aggregates')}", file=sys.stderr)
    meta = results.store.read_json("aggregates/_meta.json") or {}
    options = PlotOptions(
        formats=formats,
        all_variants=args.all_variants,
        map_images=args.map_images,
        max_stages=args.max_stages,
        confidence=meta.get("bootstrap", {}).get("confidence", 0.95),
    )
    return results, aggregates, options, meta


def plot(args: argparse.Namespace) -> int:
    from ..results.plots import FORMATS, plot_all

    results, aggregates, options, _ = prepare(args, FORMATS)
    figures = plot_all(results, aggregates, options, progress=not args.no_progress)
    for figure in figures:
        print(f"  {results.store.display(figure.files[0]).rsplit('.', 1)[0]}.{{{','.join(options.formats)}}}")
    print(f"{len(figures)} figures", file=sys.stderr)
    return 0
