"""Heatmap grids: paper Fig. 4 (the kept layer's and the output's explanations, several seeds),
paper Fig. 7 (the skip and the residual part of the explanation, trained and randomized), and
the randomization check's maps per stage and per seed, from the maps saved in the ``maps`` table.

Each map is shown divided by its own largest magnitude (red positive, blue negative; the colour
bar says so), as the paper shows explanations; the stored values keep their units (see
``benchmark.results.maps``). Titles name the model, dataset, image, the class explained and,
when the weights were random, that the network is untrained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from ..maps import decode_map
from .style import PaperFigure, figure_name, panels

COLORBAR = "relevance / max |relevance| of each map"
# Maps of untrained or randomized networks are close to noise, which PNG cannot compress: the grids'
# PNGs use fewer pixels and colours (the PDFs keep every map at full resolution).
GRID_PNG = {"dpi": 90, "colors": 64}


@dataclass
class Grid:
    """Rows × columns of cells; a cell is one row of the ``maps`` table (or None: left empty)."""

    row_labels: list[str]
    column_titles: list[str]
    cells: list[list[pd.Series | None]] = field(default_factory=list)

    def drawn(self) -> pd.DataFrame:
        """Which stored map went into which cell (what the figure shows, for tests and readers)."""
        records = []
        for r, row in enumerate(self.cells):
            for c, cell in enumerate(row):
                if cell is not None:
                    records.append({"row": r, "column": self.column_titles[c], "image_id": cell["image_id"],
                                    "kind": cell["kind"], "method": cell["method"], "component": cell["component"],
                                    "stage": cell["stage"], "seed": cell["seed"]})
        return pd.DataFrame(records, columns=["row", "column", "image_id", "kind", "method", "component", "stage",
                                              "seed"])


@lru_cache(maxsize=1)
def _imagenet_categories() -> list[str]:
    from torchvision.models import ResNet50_Weights  # the category names ship with torchvision (no download)

    return list(ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def class_label(target, classes: int | None) -> str:
    """'class 283 (Persian cat)' for ImageNet's 1000 classes, else 'class 283'."""
    if target is None or pd.isna(target):
        return "class ?"
    index = int(target)
    if classes == 1000:
        try:
            return f"class {index} ({_imagenet_categories()[index]})"
        except (ImportError, IndexError):
            pass
    return f"class {index}"


def _show_map(axis, values: np.ndarray) -> None:
    scale = float(np.abs(values).max()) or 1.0
    axis.imshow(values / scale, cmap="bwr", vmin=-1, vmax=1, interpolation="nearest")


def _show_input(axis, pixels: np.ndarray) -> None:
    axis.imshow(np.clip(np.transpose(pixels, (1, 2, 0)), 0, 1), interpolation="nearest")


def draw_grid(grid: Grid, title: str, cell_size: float = 1.55):
    """The figure of a grid, with one colour bar for all maps."""
    columns = len(grid.column_titles)
    figure, axes = panels(len(grid.row_labels) * columns, columns=columns, size=(cell_size, cell_size))
    for r, label in enumerate(grid.row_labels):
        for c in range(columns):
            axis = axes[r * columns + c]
            cell = grid.cells[r][c] if c < len(grid.cells[r]) else None
            axis.set_xticks([])
            axis.set_yticks([])
            if cell is None:
                axis.set_frame_on(False)
            else:
                values = decode_map(cell["values"], list(cell["shape"]), cell["scale"])
                (_show_input if cell["kind"] == "input" else _show_map)(axis, values)
            if r == 0:
                axis.set_title(grid.column_titles[c], fontsize=7)
        axes[r * columns].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    figure.colorbar(ScalarMappable(norm=Normalize(-1, 1), cmap="bwr"), ax=axes, shrink=0.7, aspect=25,
                    label=COLORBAR).ax.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=9)
    return figure


def _pick(rows: pd.DataFrame, **selector) -> pd.Series | None:
    match = rows
    for key, value in selector.items():
        match = match[match[key].isna()] if value is None else match[match[key] == value]
    return match.iloc[0] if len(match) else None


def _target(rows: pd.DataFrame) -> object:
    trained = rows[(rows.kind == "map") & (rows.stage == 0) & rows.target.notna()]
    return trained.target.iloc[0] if len(trained) else None


def _heading(rows: pd.DataFrame, image_id: str, classes: int | None, untrained: bool, extra: str = "") -> str:
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    parts = [model, dataset, image_id, f"target {class_label(_target(rows), classes)}"]
    parts += [extra] if extra else []
    parts += ["untrained (random weights)"] if untrained else []
    return " · ".join(str(part) for part in parts)


def _stage_columns(stages: list[int], most: int) -> list[int]:
    """At most ``most`` stages, evenly spread, always including the last one."""
    if len(stages) <= most:
        return stages
    picks = np.unique(np.round(np.linspace(0, len(stages) - 1, most)).astype(int))
    return [stages[i] for i in picks]


def _method_grid(rows: pd.DataFrame, methods: list[str], columns: list[tuple[str, dict]]) -> Grid:
    """Rows: methods; columns: the input (first row only, as paper Fig. 4), then one per (title, selector)."""
    grid = Grid(list(methods), ["input"] + [title for title, _ in columns])
    image = _pick(rows, kind="input")
    for r, method in enumerate(methods):
        maps = rows[(rows.kind == "map") & (rows.method == method)]
        grid.cells.append([image if r == 0 else None] + [_pick(maps, **selector) for _, selector in columns])
    return grid


def stage_grid_figure(rows: pd.DataFrame, image_id: str, seed: int, methods: list[str], max_stages: int = 8,
                      classes: int | None = None, untrained: bool = False) -> PaperFigure:
    """One image: every method's map of the trained model and after each (cascading) stage, one seed."""
    stages = sorted(s for s in rows.stage.unique() if s > 0)
    columns = [("trained", {"stage": 0, "seed": None})]
    columns += [(f"stage {s}", {"stage": s, "seed": seed}) for s in _stage_columns(stages, max_stages)]
    grid = _method_grid(rows, methods, columns)
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    figure = draw_grid(grid, _heading(rows, image_id, classes, untrained, f"seed {seed}"))
    return PaperFigure(
        name=figure_name("paper-fig4-fig7-style", "maps", model, dataset, image_id),
        title=f"Explanations before and after randomization: {image_id}",
        caption="Explanations of the trained model and after randomizing the top stages 1..s (one seed), each map "
        "scaled by its largest magnitude (red positive, blue negative).",
        figure=figure,
        data={"cells": grid.drawn()},
        **GRID_PNG,
    )


def seed_grid_figure(rows: pd.DataFrame, image_id: str, stage: int, methods: list[str], classes: int | None = None,
                     untrained: bool = False) -> PaperFigure:
    """One image: every method's map of the trained model and after randomizing up to ``stage``,
    for each seed (paper Fig. 4, right: several seeds)."""
    seeds = sorted(int(s) for s in rows[rows.stage == stage].seed.dropna().unique())
    columns = [("trained", {"stage": 0, "seed": None})] + [(f"seed {s}", {"stage": stage, "seed": s}) for s in seeds]
    grid = _method_grid(rows, methods, columns)
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    figure = draw_grid(grid, _heading(rows, image_id, classes, untrained, f"stage {stage}"))
    return PaperFigure(
        name=figure_name("paper-fig4-style", "seeds", model, dataset, image_id),
        title=f"Explanations after randomization with {len(seeds)} seeds: {image_id}",
        caption=f"Explanations of the trained model and after randomizing stages 1..{stage} with each seed "
        "(the rest of the network unchanged), each map scaled by its largest magnitude.",
        figure=figure,
        data={"cells": grid.drawn()},
        **GRID_PNG,
    )


def _image_rows(rows: pd.DataFrame, columns: list[tuple[str, dict]], classes: int | None) -> tuple[Grid, list[str]]:
    """Rows: image × method; columns: the input, then one per (title, selector); row labels name the
    image and the class explained."""
    images = sorted(rows.image_id.unique())
    methods = sorted(rows[rows.kind == "map"].method.dropna().unique())
    grid = Grid([], ["input"] + [title for title, _ in columns])
    for image_id in images:
        image_rows = rows[rows.image_id == image_id]
        for method in methods:
            maps = image_rows[(image_rows.kind == "map") & (image_rows.method == method)]
            label = f"{image_id}\n{class_label(_target(image_rows), classes)}"
            label += f"\n{method}" if len(methods) > 1 else ""
            grid.row_labels.append(label)
            grid.cells.append([_pick(image_rows, kind="input")] + [_pick(maps, **s) for _, s in columns])
    return grid, images


def _targets_line(rows: pd.DataFrame, classes: int | None) -> str:
    labels = []
    for image_id in sorted(rows.image_id.unique()):
        labels.append(f"{image_id}: {class_label(_target(rows[rows.image_id == image_id]), classes)}")
    return "; ".join(labels)


def kept_maps_figure(rows: pd.DataFrame, layer: str, classes: int | None = None,
                     untrained: bool = False) -> PaperFigure:
    """Paper Fig. 4: per image, the explanation of the sum of the kept layer's activations, the
    explanation of the output of the trained model, and of the output after randomizing everything
    above the kept layer, one column per seed. ``rows``: maps of experiment 'kept_features'."""
    seeds = sorted(int(s) for s in rows.seed.dropna().unique())
    last = int(rows.stage.max())
    columns = [(f"{layer} (kept)", {"component": "kept", "stage": 0}),
               ("output, trained", {"component": "output", "stage": 0, "seed": None})]
    columns += [(f"output, seed {s}", {"component": "output", "stage": last, "seed": s}) for s in seeds]
    grid, images = _image_rows(rows, columns, classes)
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    heading = f"{model} · {dataset} · kept up to {layer}, randomized above" + (" · untrained (random weights)"
                                                                               if untrained else "")
    return PaperFigure(
        name=figure_name("paper-fig4", "kept-maps", model, dataset),
        title=f"Explanations of the kept layer and of the output before and after randomization ({model})",
        caption=(
            f"Paper Fig. 4: the network is kept up to {layer} and randomized above it. Columns: the input; the LRP "
            f"explanation of the sum of {layer}'s activations; the explanation of the output of the trained model; "
            f"the explanation of the output after randomization with each of {len(seeds)} seeds. Each map scaled by "
            f"its largest magnitude (red positive, blue negative). Classes explained: {_targets_line(rows, classes)}."
        ),
        figure=draw_grid(grid, heading),
        data={"cells": grid.drawn()},
        **GRID_PNG,
    )


def skip_path_maps_figure(rows: pd.DataFrame, block: str, classes: int | None = None,
                          untrained: bool = False) -> PaperFigure:
    """Paper Fig. 7, columns 2-7: per image, the whole explanation and its parts through the skip
    connection and through the weighted branch of ``block``, trained and randomized (first seed,
    last stage). ``rows``: maps of experiment 'skip_path'."""
    seeds = sorted(int(s) for s in rows.seed.dropna().unique())
    seed, last = (seeds[0] if seeds else None), int(rows.stage.max())
    columns = []
    for component, name in (("total", "explanation"), ("skip", "skip part"), ("residual", "branch part")):
        columns += [(f"{name}, trained", {"component": component, "stage": 0, "seed": None}),
                    (f"{name}, randomized", {"component": component, "stage": last, "seed": seed})]
    grid, images = _image_rows(rows, columns, classes)
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    heading = f"{model} · {dataset} · block {block} · stage {last}, seed {seed}" + (
        " · untrained (random weights)" if untrained else "")
    return PaperFigure(
        name=figure_name("paper-fig7", "maps", model, dataset),
        title=f"Skip connection and weighted branch of {block}: explanations before and after randomization ({model})",
        caption=(
            f"Paper Fig. 7: LRP explanations of the trained model and after randomization (stage {last}, seed "
            f"{seed}), whole and split at the residual sum of {block} into the part through the skip connection and "
            "the part through the weighted branch (they add up to the whole). Each map scaled by its largest "
            f"magnitude. Classes explained: {_targets_line(rows, classes)}."
        ),
        figure=draw_grid(grid, heading),
        data={"cells": grid.drawn()},
        **GRID_PNG,
    )
