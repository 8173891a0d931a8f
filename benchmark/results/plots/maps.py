"""Heatmap grids in the style of paper Fig. 4 and Fig. 7: one image, its maps before and after
randomization, from the maps saved for the first ``runtime.save_maps`` images.

Each map is shown divided by its own largest magnitude (red positive, blue negative), as the
paper shows explanations; the stored values keep their units (see ``benchmark.results.maps``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..maps import decode_map
from .style import PaperFigure, figure_name, panels


def _stage_columns(stages: list[int], most: int) -> list[int]:
    """At most ``most`` stages, evenly spread, always including the last one."""
    if len(stages) <= most:
        return stages
    picks = np.unique(np.round(np.linspace(0, len(stages) - 1, most)).astype(int))
    return [stages[i] for i in picks]


def _show_map(axis, values: np.ndarray) -> None:
    scale = float(np.abs(values).max()) or 1.0
    axis.imshow(values / scale, cmap="bwr", vmin=-1, vmax=1, interpolation="nearest")


def _show_input(axis, pixels: np.ndarray) -> None:
    axis.imshow(np.clip(np.transpose(pixels, (1, 2, 0)), 0, 1), interpolation="nearest")


def _grid(rows: pd.DataFrame, methods: list[str], columns: list[tuple[str, dict]], title: str) -> tuple:
    """Rows: methods; columns: the input, then one column per (label, row selector)."""
    figure, axes = panels(len(methods) * (len(columns) + 1), columns=len(columns) + 1, size=(1.55, 1.55))
    image = rows[rows.kind == "input"]
    for r, method in enumerate(methods):
        cells = axes[r * (len(columns) + 1) : (r + 1) * (len(columns) + 1)]
        if len(image) and r == 0:
            first = image.iloc[0]
            _show_input(cells[0], decode_map(first["values"], list(first["shape"]), first["scale"]))
        elif r > 0:
            cells[0].set_frame_on(False)  # the input once, in the first row (paper Fig. 4)
        cells[0].set_ylabel(method, fontsize=7, rotation=0, ha="right", va="center")
        for axis, (label, selector) in zip(cells[1:], columns):
            match = rows[(rows.kind == "map") & (rows.method == method)]
            for key, value in selector.items():
                match = match[match[key].isna()] if value is None else match[match[key] == value]
            if len(match):
                first = match.iloc[0]
                _show_map(axis, decode_map(first["values"], list(first["shape"]), first["scale"]))
            if r == 0:
                axis.set_title(label, fontsize=7)
        if r == 0:
            cells[0].set_title("input", fontsize=7)
        for axis in cells:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.suptitle(title, fontsize=9)
    return figure


def stage_grid_figure(rows: pd.DataFrame, image_id: str, seed: int, methods: list[str], max_stages: int = 8) -> PaperFigure:
    """One image: every method's map of the trained model and after each (cascading) stage, one seed."""
    stages = sorted(s for s in rows.stage.unique() if s > 0)
    columns = [("trained", {"stage": 0, "seed": None})]
    columns += [(f"stage {s}", {"stage": s, "seed": seed}) for s in _stage_columns(stages, max_stages)]
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    figure = _grid(rows, methods, columns, f"{model} · {dataset} · {image_id} · seed {seed}")
    return PaperFigure(
        name=figure_name("paper-fig4-fig7-style", "maps", model, dataset, image_id),
        title=f"Explanations before and after randomization: {image_id}",
        caption="Explanations of the trained model and after randomizing the top stages 1..s (one seed), each map "
        "scaled by its largest magnitude (red positive, blue negative).",
        figure=figure,
    )


def seed_grid_figure(rows: pd.DataFrame, image_id: str, stage: int, methods: list[str]) -> PaperFigure:
    """One image: every method's map of the trained model and after randomizing up to ``stage``,
    for each seed (paper Fig. 4, right: several seeds)."""
    seeds = sorted(int(s) for s in rows[rows.stage == stage].seed.dropna().unique())
    columns = [("trained", {"stage": 0, "seed": None})] + [(f"seed {s}", {"stage": stage, "seed": s}) for s in seeds]
    model, dataset = rows.model.iloc[0], rows.dataset.iloc[0]
    figure = _grid(rows, methods, columns, f"{model} · {dataset} · {image_id} · stage {stage}")
    return PaperFigure(
        name=figure_name("paper-fig4-style", "seeds", model, dataset, image_id),
        title=f"Explanations after randomization with {len(seeds)} seeds: {image_id}",
        caption=f"Explanations of the trained model and after randomizing stages 1..{stage} with each seed "
        "(the rest of the network unchanged), each map scaled by its largest magnitude.",
        figure=figure,
    )
