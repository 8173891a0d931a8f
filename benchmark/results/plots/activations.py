"""Supplement Fig. 7-9 (Cauchy overtaking probabilities per layer) and Fig. 10 (fraction of
non-positive activations per layer), drawn when the activation statistics exist."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps

from .style import PaperFigure, figure_name, panels

OVERTAKING_TAGS = {"resnet50": "supp-fig7", "densenet121": "supp-fig8", "efficientnet-b0": "supp-fig9"}


def overtaking_figure(overtaking: pd.DataFrame, model: str, dataset: str) -> PaperFigure:
    """One panel per layer: P(Z >= K) against the low quantile, one line per high quantile."""
    data = overtaking[(overtaking.model == model) & (overtaking.dataset == dataset)]
    layers = data[["layer_index", "layer"]].drop_duplicates().sort_values("layer_index")
    figure, axes = panels(len(layers), columns=5, size=(3.0, 2.4), sharey=False)
    highs = sorted(data.q_high.unique(), reverse=True)
    palette = colormaps["viridis"]
    for axis, (index, layer) in zip(axes, layers.itertuples(index=False, name=None)):
        panel = data[data.layer_index == index]
        for position, q_high in enumerate(highs):
            line = panel[panel.q_high == q_high].sort_values("q_low", ascending=False)
            axis.plot(line.q_low.to_numpy(np.float64), line.probability.to_numpy(np.float64), marker="o",
                      markersize=3, color=palette(position / max(1, len(highs) - 1) * 0.85), label=f"q_h={q_high:g}")
        axis.invert_xaxis()
        axis.set_title(f"level {index}: {layer}", fontsize=8)
        axis.set_xlabel("low quantile q_l", fontsize=8)
        axis.set_ylabel("P(Z ≥ K)", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
    if len(axes):
        axes[0].legend(fontsize=7)
    images = int(data["images"].max()) if len(data) else 0
    figure.suptitle(f"Overtaking probabilities · {model} · {dataset} · {images} images", fontsize=10)
    return PaperFigure(
        name=figure_name(OVERTAKING_TAGS.get(model, "supp-fig7-9"), "overtaking", model, dataset),
        title=f"Overtaking probabilities, {model} ({dataset})",
        caption=(
            f"Upper bound P_γ(Z ≥ K) of the probability that low activations overtake high ones (Theorem 2), from the "
            f"mean activation quantiles over {images} images: K = V(q_h)/V(q_l), γ = √(q_l/(1−q_h)), one graph per high "
            "quantile q_h. Lower probabilities support Theorem 2 better."
        ),
        figure=figure,
        data={"probabilities": data.reset_index(drop=True)},
    )


def nonpositive_figure(stats: pd.DataFrame, dataset: str, confidence: float = 0.95) -> PaperFigure:
    """Mean fraction of non-positive activations per layer with its CI, one panel per model."""
    data = stats[stats.dataset == dataset]
    models = sorted(data.model.unique())
    figure, axes = panels(len(models), columns=2, size=(6.0, 3.0))
    drawn = []
    for axis, model in zip(axes, models):
        panel = data[data.model == model].sort_values("layer_index")
        x = panel.layer_index.to_numpy()
        axis.plot(x, panel["mean"].to_numpy(np.float64), marker="o", markersize=3, color="tab:blue")
        axis.fill_between(x, panel.ci_low.to_numpy(np.float64), panel.ci_high.to_numpy(np.float64),
                          color="tab:blue", alpha=0.2, linewidth=0)
        axis.set_ylim(0, 1.02)
        axis.set_title(f"{model} · {dataset} · {int(panel['count'].max())} images", fontsize=10)
        drawn.append(panel)
        axis.set_xlabel("layer (forward order)")
        axis.set_ylabel("fraction of non-positive activations")
        axis.grid(alpha=0.3)
    images = int(data["count"].max()) if len(data) else 0
    if len(models) > 1:  # one model: its panel's title says it all
        figure.suptitle(f"Non-positive activations · {', '.join(models)} · {dataset} · {images} images", fontsize=10)
    return PaperFigure(
        name=figure_name("supp-fig10", "nonpositive", dataset),
        title=f"Non-positive activations per layer ({dataset})",
        caption=f"Fraction of non-positive activations per layer, mean over {images} images with a bootstrap "
        f"{confidence:.0%} CI of the mean. Higher values indicate a higher fraction of non-positive activations.",
        figure=figure,
        data={"points": pd.concat(drawn, ignore_index=True) if drawn else data.iloc[:0]},
    )
