"""Paper Fig. 5: how much of the logits survives randomizing a layer: the correlation of all
logits before and after, per randomized layer, over every image (from the ``logits`` table, so
always drawn), and the scatter of every class logit before against after for a few images (when
their logit vectors were saved, ``runtime.save_maps``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import PaperFigure, figure_name, stage_label, panels, stage_axis, stage_list

METRICS = {"pearson": ("Pearson", "o"), "spearman": ("Spearman", "s")}
AXIS_TITLES = {"independent": "layer randomized alone (the rest trained)",
               "top_down": "randomized from the output down to", "bottom_up": "randomized from the input up to",
               "split": "randomized from"}


def logit_correlation_figure(stats: pd.DataFrame, model: str, dataset: str, confidence: float = 0.95) -> PaperFigure:
    """Mean correlation of the logits before and after randomization per stage, Pearson and Spearman,
    with the bootstrap CI of the mean; ``stats``: the logit_stats aggregate."""
    data = stats[(stats.model == model) & (stats.dataset == dataset)].sort_values("stage")
    stages = data[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
    position = {int(stage): i for i, stage in enumerate(stages.stage)}
    mode = str(data["mode"].iloc[0]) if len(data) else "independent"
    figure, (axis,) = panels(1, size=(max(4.5, 0.55 * len(stages) + 2.5), 3.6))
    drawn = []
    for rank, (metric, (label, marker)) in enumerate(METRICS.items()):
        rows = data[data.metric == metric]
        if not len(rows):
            continue
        x = np.array([position[int(s)] for s in rows.stage], dtype=np.float64) + (rank - 0.5) * 0.16
        mean = rows["mean"].to_numpy(np.float64)
        low = np.maximum(np.nan_to_num(mean - rows["ci_low"].to_numpy(np.float64)), 0)
        high = np.maximum(np.nan_to_num(rows["ci_high"].to_numpy(np.float64) - mean), 0)
        axis.errorbar(x, mean, yerr=[low, high], marker=marker, linestyle="none", capsize=3, markersize=5,
                      color=("tab:blue", "tab:orange")[rank], label=label)
        drawn.append(rows.assign(x=x, label=[stage_label(layers, mode) for layers in rows.layers]))
    axis.axhline(0.0, color="gray", linewidth=0.8)
    axis.set_ylim(-0.1, 1.05)
    axis.set_xlim(-0.6, len(stages) - 0.4)
    stage_axis(axis, range(len(stages)), [stage_label(layers, mode) for layers in stages.layers],
               AXIS_TITLES.get(mode, "randomized"))
    axis.set_ylabel("correlation of the logits before/after", fontsize=8)
    images = int(data["count"].max()) if len(data) else 0
    axis.set_title(f"{model} · {dataset} · {images} images", fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    return PaperFigure(
        name=figure_name("paper-fig5", "logit-correlation", model, dataset),
        title=f"Logit correlation before and after randomization, {model} ({dataset})",
        caption=(
            f"Effect of randomizing a layer on all output logits (paper §4.2): correlation between the logit vector "
            f"of the trained model and that of the randomized one, mean over {images} images with the bootstrap "
            f"{confidence:.0%} CI of the mean. A randomized layer bypassed by a skip connection leaves the logits "
            f"largely intact (high correlation); the classifier has no bypass. Randomized ({mode}): "
            f"{stage_list(stages)}."
        ),
        figure=figure,
        data={"points": pd.concat(drawn, ignore_index=True) if drawn else data.iloc[:0]},
    )


def logit_scatter_figure(rows: pd.DataFrame, model: str, dataset: str, images: int = 3) -> PaperFigure:
    """Rows: images (the first ``images`` with saved logit vectors), columns: randomized stages.
    ``rows``: the logits table of one seed, with logits_before/after filled."""
    data = rows[(rows.model == model) & (rows.dataset == dataset) & rows.logits_before.notna()]
    image_ids = sorted(data.image_id.unique())[:images]
    stages = data[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
    columns = max(1, len(stages))
    figure, axes = panels(len(image_ids) * columns, columns=columns, size=(2.8, 2.6))
    drawn = []
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
            drawn.append({"image_id": image_id, "stage": stage, "classes": len(before), "pearson": first.pearson})
            axis.set_title(f"{_short(layers)}\nr = {first.pearson:.2f}", fontsize=8)
            axis.tick_params(labelsize=7)
            if column == 0:
                axis.set_ylabel(f"{image_id}\nlogit after", fontsize=7)
            if row == len(image_ids) - 1:
                axis.set_xlabel("logit before", fontsize=7)
    seed = int(data.seed.iloc[0]) if len(data) else 0
    figure.suptitle(f"{model} · {dataset} · every class logit of {len(image_ids)} images, seed {seed}", fontsize=10)
    return PaperFigure(
        name=figure_name("paper-fig5", "logits", model, dataset),
        title=f"Logits before and after randomization, {model} ({dataset})",
        caption="Effect of randomization on the output logits: each point is one class logit before and after "
        "randomization; rows are images, columns the randomized layers (r: Pearson correlation).",
        figure=figure,
        data={"scatter": pd.DataFrame(drawn, columns=["image_id", "stage", "classes", "pearson"])},
    )


def _short(layers) -> str:
    names = list(layers) if layers is not None else []
    return names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})" if names else "?"
