"""Paper Fig. 5: every class logit before against after randomizing a layer, per image."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import PaperFigure, figure_name, panels


def logit_scatter_figure(rows: pd.DataFrame, model: str, dataset: str, images: int = 3) -> PaperFigure:
    """Rows: images (the first ``images`` with saved logit vectors), columns: randomized stages.
    ``rows``: the logits table of one seed, with logits_before/after filled."""
    data = rows[(rows.model == model) & (rows.dataset == dataset) & rows.logits_before.notna()]
    image_ids = sorted(data.image_id.unique())[:images]
    stages = data[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
    columns = max(1, len(stages))
    figure, axes = panels(len(image_ids) * columns, columns=columns, size=(2.8, 2.6))
    for row, image_id in enumerate(image_ids):
        for column, (stage, layers) in enumerate(stages.itertuples(index=False, name=None)):
            axis = axes[row * columns + column]
            cell = data[(data.image_id == image_id) & (data.stage == stage)]
            if not len(cell):
                axis.set_axis_off()
                continue
            first = cell.iloc[0]
            before = np.asarray(first.logits_before, np.float64)
            after = np.asarray(first.logits_after, np.float64)
            axis.scatter(before, after, s=3, alpha=0.5, color="tab:blue", linewidths=0)
            axis.set_title(f"{_short(layers)}\nr = {first.pearson:.2f}", fontsize=8)
            axis.tick_params(labelsize=7)
            if column == 0:
                axis.set_ylabel(f"{image_id}\nlogit after", fontsize=7)
            if row == len(image_ids) - 1:
                axis.set_xlabel("logit before", fontsize=7)
    return PaperFigure(
        name=figure_name("paper-fig5", "logits", model, dataset),
        title=f"Logits before and after randomization, {model} ({dataset})",
        caption="Effect of randomization on the output logits: each point is one class logit before and after "
        "randomization; rows are images, columns the randomized layers (r: Pearson correlation).",
        figure=figure,
    )


def _short(layers) -> str:
    names = list(layers) if layers is not None else []
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})" if names else "?"
