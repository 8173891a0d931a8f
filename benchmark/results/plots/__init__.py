"""``benchmark plot``: the paper's figures from a run's aggregates and tables (matplotlib).

One function per figure type (``curves``, ``activations``, ``logits``, ``maps``); this module
decides which figures the data allow and writes each as PNG and PDF under ``<out>/figures/``,
named after the paper figure it reproduces (``paper-fig1_…``, ``supp-fig5_…``). Figures whose
tables are absent (activation statistics, logits, saved maps) are simply not drawn.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Iterator

import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from ...metrics import METRICS
from ..query import Results
from ..store import FIGURES
from .activations import nonpositive_figure, overtaking_figure
from .curves import occlusion_figure, randomization_figure
from .logits import logit_scatter_figure
from .maps import seed_grid_figure, stage_grid_figure
from .style import MethodColors, PaperFigure, encode, method_order

FORMATS = ("png", "pdf")
PAPER_VARIANT = ("second_moment", False)  # normalization, absolute of the paper's figures


@dataclass(frozen=True)
class PlotOptions:
    formats: tuple[str, ...] = FORMATS
    all_variants: bool = False  # every normalization x signed/abs, not only the paper's
    map_images: int = 4  # heatmap grids for at most this many saved images
    max_stages: int = 8  # stage columns of a heatmap grid
    logit_images: int = 3  # rows of the logit scatter
    confidence: float = 0.95


def paper_figures(results: Results, aggregates: dict[str, pa.Table], options: PlotOptions = PlotOptions()) -> Iterator[PaperFigure]:
    """Every figure the output allows, in paper order."""
    frames = {name: table.to_pandas() for name, table in aggregates.items()}
    if "occlusion_curves" in frames:  # the paper's curves: most relevant first, from the blurred copy
        curves = frames["occlusion_curves"]
        frames["occlusion_curves"] = curves[(curves["order"] == "mif") & (curves["imputer"] == "blur")]
    curves, stats = frames.get("occlusion_curves"), frames.get("randomization_stats")
    present = set()
    for frame in (curves, stats):
        if frame is not None:
            present |= set(frame.method)
    methods = method_order(results.manifest, sorted(present))
    colors = MethodColors(methods)
    if curves is not None:
        for dataset, kernel in _distinct(curves, ["dataset", "kernel"], descending=["kernel"]):
            yield occlusion_figure(curves, kernel, dataset, colors, methods, options.confidence)
    if stats is not None:
        for dataset, in _distinct(stats, ["dataset"]):
            found = set(stats.metric)
            for metric in [m for m in METRICS if m in found] + sorted(found - set(METRICS)):
                for normalization, absolute in _variants(stats[(stats.dataset == dataset) & (stats.metric == metric)], options):
                    yield randomization_figure(stats, metric, normalization, absolute, dataset, colors, methods,
                                               options.confidence)
    if "overtaking" in frames:
        for model, dataset in _distinct(frames["overtaking"], ["model", "dataset"]):
            yield overtaking_figure(frames["overtaking"], model, dataset)
    if "activation_stats" in frames:
        for dataset, in _distinct(frames["activation_stats"], ["dataset"]):
            yield nonpositive_figure(frames["activation_stats"], dataset, options.confidence)
    yield from _logit_figures(results, options)
    yield from _map_figures(results, methods, options)


def _distinct(frame: pd.DataFrame, keys: list[str], descending: list[str] = ()) -> list[tuple]:
    ordered = frame[keys].drop_duplicates().sort_values(keys, ascending=[k not in descending for k in keys])
    return list(ordered.itertuples(index=False, name=None))


def _variants(frame: pd.DataFrame, options: PlotOptions) -> list[tuple[str, bool]]:
    """The paper's (second moment, signed) or the nearest available; all with ``all_variants``."""
    available = _distinct(frame, ["normalization", "absolute"])
    if options.all_variants or not available:
        return available
    if PAPER_VARIANT in available:
        return [PAPER_VARIANT]
    signed = [v for v in available if not v[1]]
    return [(signed or available)[0]]


def _logit_figures(results: Results, options: PlotOptions) -> Iterator[PaperFigure]:
    if not results.files("logits"):
        return
    found = results.sql("SELECT DISTINCT model, dataset, min(seed) OVER (PARTITION BY model, dataset) AS seed "
                        "FROM logits WHERE logits_before IS NOT NULL").to_pylist()
    for row in found:
        rows = results.frame("logits", model=row["model"], dataset=row["dataset"], seed=row["seed"])
        yield logit_scatter_figure(rows, row["model"], row["dataset"], options.logit_images)


def _map_figures(results: Results, methods: list[str], options: PlotOptions) -> Iterator[PaperFigure]:
    if not results.files("maps") or options.map_images <= 0:
        return
    images = results.sql("SELECT DISTINCT model, dataset, image_id FROM maps WHERE experiment = 'randomization' "
                         "ORDER BY ALL").to_pylist()
    per_run: dict[tuple, int] = {}
    for row in images:
        key = (row["model"], row["dataset"])
        per_run[key] = per_run.get(key, 0) + 1
        if per_run[key] > options.map_images:
            continue
        seeds = results.sql("SELECT DISTINCT seed FROM maps WHERE model = ? AND dataset = ? AND seed IS NOT NULL "
                            "AND experiment = 'randomization' ORDER BY seed", list(key)).column("seed").to_pylist()
        rows = results.frame("maps", model=key[0], dataset=key[1], image_id=row["image_id"], experiment="randomization",
                             where="seed IS NULL OR seed = " + str(int(seeds[0])) if seeds else None)
        shown = [m for m in methods if m in set(rows.method.dropna())] or sorted(set(rows.method.dropna()))
        yield stage_grid_figure(rows, row["image_id"], seeds[0] if seeds else 0, shown, options.max_stages)
        if len(seeds) > 1:
            last = int(rows.stage.max())
            every_seed = results.frame("maps", model=key[0], dataset=key[1], image_id=row["image_id"],
                                       experiment="randomization", stage=[0, last])
            yield seed_grid_figure(every_seed, row["image_id"], last, shown)


def plot_all(results: Results, aggregates: dict[str, pa.Table], options: PlotOptions = PlotOptions(),
             progress: bool = False, keep_png: bool = False) -> list[PaperFigure]:
    """Draw and write every figure under ``<out>/figures/``; returns them (with PNG bytes when
    ``keep_png``, for the report) and releases the matplotlib figures."""
    written = []
    bar = tqdm(desc="figures", unit="fig", disable=not progress, file=sys.stderr, leave=False)
    for figure in paper_figures(results, aggregates, options):
        for fmt in options.formats:
            relative = f"{FIGURES}/{figure.name}.{fmt}"
            data = encode(figure.figure, fmt)
            results.store.write_bytes(relative, data)
            figure.files.append(relative)
            if fmt == "png" and keep_png:
                figure.png = data
        figure.figure = None  # type: ignore[assignment]  # free the drawing; the files are written
        written.append(figure)
        bar.update()
    bar.close()
    return written


__all__ = ["FIGURES", "PaperFigure", "PlotOptions", "paper_figures", "plot_all"]
