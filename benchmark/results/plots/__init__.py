"""``benchmark plot``: the paper's figures from a run's aggregates and tables (matplotlib).

One function per figure type (``curves``, ``activations``, ``logits``, ``paths``, ``maps``); this
module decides which figures the data allow and writes each as PNG and PDF under
``<out>/figures/``, named after the paper figure it reproduces (``paper-fig1_…``, ``supp-fig5_…``).
Figures whose tables are absent (activation statistics, logits, skip path, kept features, saved
maps) are simply not drawn.
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
from .logits import logit_correlation_figure, logit_scatter_figure
from .maps import kept_maps_figure, seed_grid_figure, skip_path_maps_figure, stage_grid_figure
from .paths import kept_similarity_figure, skip_path_figure
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
    for name in ("occlusion_curves", "occlusion_relative"):  # the paper's curves: most relevant first, blurred copy
        if name in frames:
            frame = frames[name]
            frames[name] = frame[(frame["order"] == "mif") & (frame["imputer"] == "blur")]
    curves, stats = frames.get("occlusion_curves"), frames.get("randomization_stats")
    present = set()
    for frame in (curves, stats):
        if frame is not None:
            present |= set(frame.method)
    methods = method_order(results.manifest, sorted(present))
    colors = MethodColors(methods)
    spec = results.manifest.get("spec", {})
    offset = int(spec.get("dataset", {}).get("offset") or 0)
    if curves is not None:
        for dataset, kernel in _distinct(curves, ["dataset", "kernel"], descending=["kernel"]):
            yield occlusion_figure(curves, kernel, dataset, colors, methods, options.confidence,
                                   frames.get("occlusion_relative"), offset)
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
    if "logit_stats" in frames:
        for model, dataset in _distinct(frames["logit_stats"], ["model", "dataset"]):
            yield logit_correlation_figure(frames["logit_stats"], model, dataset, options.confidence)
    yield from _logit_figures(results, options)
    if "kept_features_stats" in frames:
        for model, dataset in _distinct(frames["kept_features_stats"], ["model", "dataset"]):
            yield kept_similarity_figure(frames["kept_features_stats"], model, dataset, options.confidence)
    if "skip_path_stats" in frames:
        for model, dataset in _distinct(frames["skip_path_stats"], ["model", "dataset"]):
            yield skip_path_figure(frames["skip_path_stats"], model, dataset, options.confidence)
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
    spec = results.manifest.get("spec", {})
    classes = _class_count(spec)
    untrained = str(results.manifest.get("weights", "")).startswith("random")
    drawn = {"classes": classes, "untrained": untrained}
    yield from _randomization_grids(results, methods, options, drawn)
    for experiment, draw in (("kept_features", _kept_grid), ("skip_path", _skip_path_grid)):
        found = results.sql("SELECT DISTINCT model, dataset FROM maps WHERE experiment = ? ORDER BY ALL",
                            [experiment]).to_pylist()
        for row in found:
            images = results.sql(
                "SELECT DISTINCT image_id FROM maps WHERE experiment = ? AND model = ? AND dataset = ? ORDER BY 1 "
                f"LIMIT {int(options.map_images)}", [experiment, row["model"], row["dataset"]]
            ).column("image_id").to_pylist()
            rows = results.frame("maps", model=row["model"], dataset=row["dataset"], image_id=images,
                                 experiment=experiment)
            yield draw(rows, spec, drawn)


def _class_count(spec: dict) -> int | None:
    """The model's output count (ImageNet's 1000 classes get their names in the figures)."""
    from ...config import JobSpec

    try:
        return JobSpec.model_validate(spec).num_classes()
    except ValueError:
        return None


def _kept_grid(rows: pd.DataFrame, spec: dict, drawn: dict) -> PaperFigure:
    kept = spec.get("kept_activation_explanation", {})
    layer = kept.get("layer") or spec.get("randomization", {}).get("split_after") or "kept layer"
    return kept_maps_figure(rows, layer, **drawn)


def _skip_path_grid(rows: pd.DataFrame, spec: dict, drawn: dict) -> PaperFigure:
    return skip_path_maps_figure(rows, spec.get("skip_path", {}).get("block", "?"), **drawn)


def _randomization_grids(results: Results, methods: list[str], options: PlotOptions,
                         drawn: dict) -> Iterator[PaperFigure]:
    """Maps the randomization check saved (``runtime.save_maps``): per image, every stage (one seed)
    and, with several seeds, every seed at the last stage. Nothing without randomized maps."""
    images = results.sql("SELECT DISTINCT model, dataset, image_id FROM maps WHERE experiment = 'randomization' "
                         "AND stage > 0 ORDER BY ALL").to_pylist()
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
        yield stage_grid_figure(rows, row["image_id"], seeds[0] if seeds else 0, shown, options.max_stages, **drawn)
        if len(seeds) > 1:
            last = int(rows.stage.max())
            every_seed = results.frame("maps", model=key[0], dataset=key[1], image_id=row["image_id"],
                                       experiment="randomization", stage=[0, last])
            yield seed_grid_figure(every_seed, row["image_id"], last, shown, **drawn)


def plot_all(results: Results, aggregates: dict[str, pa.Table], options: PlotOptions = PlotOptions(),
             progress: bool = False, keep_png: bool = False) -> list[PaperFigure]:
    """Draw and write every figure under ``<out>/figures/``; returns them (with PNG bytes when
    ``keep_png``, for the report) and releases the matplotlib figures."""
    written = []
    bar = tqdm(desc="figures", unit="fig", disable=not progress, file=sys.stderr, leave=False)
    for figure in paper_figures(results, aggregates, options):
        for fmt in options.formats:
            relative = f"{FIGURES}/{figure.name}.{fmt}"
            data = encode(figure.figure, fmt, figure.dpi, figure.colors)
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
