"""Paper Fig. 1 and supplement Fig. 1-3 (occlusion curves) and Fig. 2 and supplement Fig. 4-6
(similarity against randomization stage): one line per method with its bootstrap band."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...metrics import METRICS
from ...metrics.scores import AUC
from .style import MethodColors, PaperFigure, figure_name, panels

OCCLUSION_CAPTION = (
    "Model faithfulness by iterative occlusion with {kernel}x{kernel} tiles taken from a blurred copy of the image: "
    "softmax probability of the target after occluding the t most relevant tiles, mean over {images} images with a "
    "bootstrap {confidence} band. {better}"
)
RANDOMIZATION_CAPTION = (
    "Top-down model randomization check: {metric} between the trained model's map and the map after randomizing "
    "stages 1..s ({normalization}, {signed} maps), mean over {images} images with a bootstrap {confidence} band. "
    "{bound}{better}"
)
BOUND_CAPTION = "Dashed: the {label} {formula}, the {metric} of uncorrelated maps. "
NORMALIZATION_TEXT = {"second_moment": "maps divided by the square root of their second moment",
                      "max_abs": "maps divided by their largest magnitude", "none": "maps not normalized"}


def occlusion_tag(kernel: int, dataset: str) -> str | None:
    """Paper Fig. 1 is k=15 on ImageNet; supplement Fig. 1 k=8, Fig. 2 COCO and Fig. 3 VOC (k=15)."""
    if kernel == 15:
        return {"coco": "supp-fig2", "voc": "supp-fig3"}.get(dataset, "paper-fig1")
    return "supp-fig1" if kernel == 8 else None


def randomization_tag(metric: str, dataset: str, normalization: str, absolute: bool) -> str | None:
    """The paper figure a metric's plot reproduces (its registry entry: Fig. 2 = supplement Fig. 4 for
    SSIM, supplement Fig. 5 for MSE, Fig. 6 for SSIM on COCO); all with second-moment normalization of
    signed maps."""
    if normalization != "second_moment" or absolute or metric not in METRICS:
        return None
    return METRICS[metric].paper_figure(dataset)


def _band(axis, x, frame: pd.DataFrame, color, label: str) -> None:
    axis.plot(x, frame["mean"].to_numpy(np.float64), color=color, label=label, linewidth=1.6)
    low, high = frame["ci_low"].to_numpy(np.float64), frame["ci_high"].to_numpy(np.float64)
    axis.fill_between(x, low, high, color=color, alpha=0.18, linewidth=0)


def _panel_keys(frame: pd.DataFrame, keys: list[str]) -> list[tuple]:
    return list(frame[keys].drop_duplicates().sort_values(keys).itertuples(index=False, name=None))


def _legend(figure, colors: MethodColors, methods: list[str], extra: list[Line2D] = ()) -> None:
    handles = [Line2D([], [], color=colors(m), linewidth=2, label=m) for m in methods] + list(extra)
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def occlusion_figure(curves: pd.DataFrame, kernel: int, dataset: str, colors: MethodColors, methods: list[str],
                     confidence: float = 0.95) -> PaperFigure:
    """Mean occlusion curve per method, one panel per model; ``curves``: the occlusion_curves aggregate."""
    data = curves[(curves.kernel == kernel) & (curves.dataset == dataset)]
    keys = _panel_keys(data, ["model"])
    figure, axes = panels(len(keys))
    images = int(data["count"].max()) if len(data) else 0
    for axis, (model,) in zip(axes, keys):
        panel = data[data.model == model]
        for method in methods:
            line = panel[panel.method == method].sort_values("step")
            if len(line):
                _band(axis, line["step"].to_numpy(), line, colors(method), method)
        axis.set_title(f"{model} · {dataset} · k={kernel}", fontsize=10)
        axis.set_xlabel("occluded tiles t")
        axis.set_ylabel("softmax probability of the target")
        axis.grid(alpha=0.3)
    _legend(figure, colors, [m for m in methods if m in set(data.method)])
    tag = occlusion_tag(kernel, dataset)
    return PaperFigure(
        name=figure_name(tag, "occlusion", f"k{kernel}", dataset),
        title=f"Occlusion curves, kernel {kernel} ({dataset})",
        caption=OCCLUSION_CAPTION.format(kernel=kernel, images=images, confidence=f"{confidence:.0%}",
                                         better=AUC.better_text),
        figure=figure,
    )


def randomization_figure(stats: pd.DataFrame, metric: str, normalization: str, absolute: bool, dataset: str,
                         colors: MethodColors, methods: list[str], confidence: float = 0.95) -> PaperFigure:
    """Mean similarity per stage and method with bands and the zero-covariance bound, one panel
    per model (and mode); ``stats``: the randomization_stats aggregate."""
    data = stats[(stats.metric == metric) & (stats.normalization == normalization)
                 & (stats.absolute == absolute) & (stats.dataset == dataset)]
    keys = _panel_keys(data, ["model", "mode"])
    figure, axes = panels(len(keys))
    known = METRICS.get(metric)  # None: a metric this process did not register (plotted by its name)
    bound = known.bound if known is not None else None
    has_bound = bound is not None and data["bound_mean"].notna().any()
    for axis, (model, mode) in zip(axes, keys):
        panel = data[(data.model == model) & (data["mode"] == mode)]
        for method in methods:
            line = panel[panel.method == method].sort_values("stage")
            if not len(line):
                continue
            x = line["stage"].to_numpy()
            _band(axis, x, line, colors(method), method)
            if has_bound:
                axis.plot(x, line["bound_mean"].to_numpy(np.float64), color=colors(method), linestyle="--",
                          linewidth=1.0, alpha=0.8)
        stages = sorted(panel.stage.unique())
        axis.set_xticks(stages)
        axis.set_title(f"{model} · {dataset} · {mode}", fontsize=10)
        axis.set_xlabel("randomization stage (1 = head)")
        axis.set_ylabel(f"{known.axis_label if known else metric} to the trained model's map")
        axis.grid(alpha=0.3)
    extra = [Line2D([], [], color="gray", linestyle="--", label=bound.label)] if has_bound else []
    _legend(figure, colors, [m for m in methods if m in set(data.method)], extra)
    images = int(data["count"].max()) if len(data) else 0
    signed = "absolute" if absolute else "signed"
    tag = randomization_tag(metric, dataset, normalization, absolute)
    variant = [] if tag else [normalization] + (["abs"] if absolute else [])
    return PaperFigure(
        name=figure_name(tag, "randomization", metric, *variant, dataset),
        title=f"Randomization check: {metric} ({normalization}, {signed}; {dataset})",
        caption=RANDOMIZATION_CAPTION.format(
            metric=known.label if known else metric,
            normalization=NORMALIZATION_TEXT.get(normalization, normalization), signed=signed, images=images,
            confidence=f"{confidence:.0%}",
            bound=BOUND_CAPTION.format(label=bound.label, formula=bound.formula, metric=known.axis_label)
            if has_bound else "",
            better=known.better_text if known else "",
        ),
        figure=figure,
    )
