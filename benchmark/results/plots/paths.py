"""Paper Fig. 7 (§4.2) as statistics: how LRP relevance splits between a residual block's skip
connection and its weighted branch, for the trained model and after randomizing the branch, and how
similar each part stays to the trained model's. From the ``skip_path_stats`` aggregate."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .style import PaperFigure, figure_name, stage_label, panels

PARTS = {"skip": ("skip connection", "tab:blue", "//"), "residual": ("weighted branch", "tab:red", ""),
         "total": ("whole explanation", "0.4", "..")}


def _bars(axis, frame: pd.DataFrame, groups: list[int], parts: list[str], labels: dict[int, str]) -> list[pd.DataFrame]:
    """Grouped bars (one group per stage, one bar per part) with CI bars; returns what was drawn."""
    width = 0.8 / len(parts)
    drawn = []
    for rank, part in enumerate(parts):
        rows = frame[frame.component == part].set_index("stage").reindex(groups)
        x = np.arange(len(groups)) + (rank - (len(parts) - 1) / 2) * width
        mean = rows["mean"].to_numpy(np.float64)
        low = np.maximum(np.nan_to_num(mean - rows["ci_low"].to_numpy(np.float64)), 0)
        high = np.maximum(np.nan_to_num(rows["ci_high"].to_numpy(np.float64) - mean), 0)
        name, color, hatch = PARTS[part]
        axis.bar(x, mean, width=width * 0.95, color=color, alpha=0.75, hatch=hatch, label=name,
                 yerr=[low, high], capsize=3, error_kw={"elinewidth": 1.0})
        drawn.append(rows.reset_index().assign(x=x, label=[labels[s] for s in groups]))
    axis.set_xticks(np.arange(len(groups)))
    axis.set_xticklabels([labels[s] for s in groups], rotation=30, ha="right", rotation_mode="anchor", fontsize=7)
    axis.grid(alpha=0.3, axis="y")
    return drawn


def skip_path_figure(stats: pd.DataFrame, model: str, dataset: str, confidence: float = 0.95) -> PaperFigure:
    """Per LRP method (a row of panels): the share of the total relevance through the skip connection
    and through the weighted branch, trained and randomized, and the SSIM and Spearman correlation of
    each part with the trained model's."""
    data = stats[(stats.model == model) & (stats.dataset == dataset)]
    methods = sorted(data.method.unique())
    figure, axes = panels(3 * len(methods), columns=3, size=(3.6, 3.2))
    stages = data[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
    labels = {int(row.stage): "trained" if row.stage == 0 else f"{stage_label(row.layers)} randomized"
              for row in stages.itertuples(index=False)}
    randomized = [s for s in labels if s > 0]
    share, similarity = [], []
    for row, method in enumerate(methods):
        rows = data[data.method == method]
        block = str(rows.block.iloc[0])
        axis = axes[3 * row]
        share += _bars(axis, rows[rows.quantity == "share"], sorted(labels), ["skip", "residual"], labels)
        axis.axhline(0.0, color="black", linewidth=0.6)
        axis.set_ylabel("share of the total relevance", fontsize=8)
        axis.set_title(f"{method} · {block}: relevance through", fontsize=9)
        axis.legend(fontsize=7)
        for offset, metric in ((1, "ssim"), (2, "spearman")):
            axis = axes[3 * row + offset]
            drawn = _bars(axis, rows[rows.quantity == metric], randomized, ["skip", "residual", "total"], labels)
            similarity += [frame.assign(quantity=metric) for frame in drawn]
            axis.set_ylabel(f"{'SSIM' if metric == 'ssim' else 'Spearman'} to the trained model's part", fontsize=8)
            axis.set_title(f"{method}: each part vs. trained", fontsize=9)
            axis.axhline(0.0, color="black", linewidth=0.6)
            if offset == 1:
                axis.legend(fontsize=7)
    images = int(data["count"].max()) if len(data) else 0
    figure.suptitle(f"Skip connection vs. weighted branch · {model} · {dataset} · {images} images", fontsize=10)
    return PaperFigure(
        name=figure_name("paper-fig7", "skip-path", model, dataset),
        title=f"Relevance through the skip connection and the weighted branch, {model} ({dataset})",
        caption=(
            "Paper Fig. 7 in numbers: LRP relevance of the explained logit split at the residual sum into what "
            "passes the skip connection and what passes the weighted branch (left: share of the total relevance), "
            "for the trained model and after randomizing a layer of the branch; middle and right: SSIM and "
            "Spearman correlation of each part's explanation with the same part of the trained model's (signed "
            f"maps, second-moment normalization). Means over {images} images with bootstrap {confidence:.0%} CIs "
            "of the mean. The paper's observation: the skip part stays (high similarity), the branch's part changes."
        ),
        figure=figure,
        data={"share": pd.concat(share, ignore_index=True) if share else data.iloc[:0],
              "similarity": pd.concat(similarity, ignore_index=True) if similarity else data.iloc[:0]},
    )


def kept_similarity_figure(stats: pd.DataFrame, model: str, dataset: str, confidence: float = 0.95) -> PaperFigure:
    """Paper Fig. 4 in numbers: similarity of the explanation of the kept layer's activations to the
    explanation of the output, trained and after randomizing everything above the kept layer; one
    panel per metric, signed and absolute maps side by side; from ``kept_features_stats``."""
    data = stats[(stats.model == model) & (stats.dataset == dataset)]
    normalization = "second_moment" if "second_moment" in set(data.normalization) else sorted(set(data.normalization))[0]
    data = data[data.normalization == normalization]
    metrics = [m for m in ("ssim", "spearman", "mse") if m in set(data.metric)]
    figure, axes = panels(len(metrics), columns=3, size=(3.6, 3.2))
    stages = data[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
    labels = {int(row.stage): "trained" if row.stage == 0 else f"randomized from {stage_label(row.layers)}"
              for row in stages.itertuples(index=False)}
    groups = sorted(labels)
    drawn = []
    for axis, metric in zip(axes, metrics):
        rows = data[data.metric == metric]
        variants = [(method, absolute) for method in sorted(rows.method.unique()) for absolute in (False, True)
                    if len(rows[(rows.method == method) & (rows.absolute == absolute)])]
        for rank, (method, absolute) in enumerate(variants):
            line = rows[(rows.method == method) & (rows.absolute == absolute)].set_index("stage").reindex(groups)
            x = np.arange(len(groups)) + (rank - (len(variants) - 1) / 2) * 0.18
            mean = line["mean"].to_numpy(np.float64)
            low = np.maximum(np.nan_to_num(mean - line["ci_low"].to_numpy(np.float64)), 0)
            high = np.maximum(np.nan_to_num(line["ci_high"].to_numpy(np.float64) - mean), 0)
            axis.errorbar(x, mean, yerr=[low, high], marker="s" if absolute else "o", linestyle="none", capsize=3,
                          label=f"{method}, {'absolute' if absolute else 'signed'}")
            drawn.append(line.reset_index().assign(x=x, label=[labels[s] for s in groups]))
        axis.set_xticks(np.arange(len(groups)))
        axis.set_xticklabels([labels[s] for s in groups], rotation=30, ha="right", rotation_mode="anchor", fontsize=7)
        axis.set_xlim(-0.6, len(groups) - 0.4)
        axis.set_ylabel(f"{metric.upper() if metric != 'spearman' else 'Spearman'}: kept layer vs. output", fontsize=8)
        axis.grid(alpha=0.3)
    if len(axes):
        axes[0].legend(fontsize=7)
    layer = str(data.layer.iloc[0]) if len(data) else "?"
    images = int(data["count"].max()) if len(data) else 0
    figure.suptitle(f"Kept layer {layer} · {model} · {dataset} · {images} images", fontsize=10)
    return PaperFigure(
        name=figure_name("paper-fig4", "kept-similarity", model, dataset),
        title=f"Explanation of the kept layer vs. explanation of the output, {model} ({dataset})",
        caption=(
            f"Paper §4.1 in numbers: the network is kept up to {layer} and randomized above it. Similarity between "
            f"the LRP explanation of the sum of {layer}'s activations and the explanation of the output, for the "
            f"trained model and after randomization (seeds averaged per image), {normalization} normalization; "
            f"means over {images} images with bootstrap {confidence:.0%} CIs of the mean. High similarity after "
            "randomization: the structure that survives randomization is already in the kept layer."
        ),
        figure=figure,
        data={"points": pd.concat(drawn, ignore_index=True) if drawn else data.iloc[:0]},
    )
