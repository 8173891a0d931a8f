"""Paper Fig. 1 and supplement Fig. 1-3 (occlusion curves) and Fig. 2 and supplement Fig. 4-6
(similarity against randomization stage).

Occlusion: one line per method (own colour, line style and marker) with the bootstrap CI of the
mean over images, and beside it each method's curve relative to the random-order curve (the noise
method: i.i.d. noise maps rank the tiles in a uniformly random order), paired per image.
Randomization: the stages on the x axis named by the module each reaches; cascading modes (top-down,
bottom-up) as lines with CI bands, one-stage modes (independent layers, a split) as points with CI
bars; each method's zero-covariance bound dashed in its colour.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from ...metrics import METRICS
from ...metrics.scores import AUC
from .style import MethodColors, PaperFigure, figure_name, panels, stage_axis, stage_label, stage_list

OCCLUSION_CAPTION = (
    "Model faithfulness by iterative occlusion with {kernel}x{kernel} tiles taken from a blurred copy of the image: "
    "softmax probability of the target after occluding the t most relevant tiles, mean over {images} images; the "
    "band is the bootstrap {confidence} CI of the mean (not the spread of the images). {better} {relative}"
)
RELATIVE_CAPTION = (
    "Right: each image's curve minus the same image's random-order curve (tiles occluded in a uniformly random "
    "order: the ranking by the '{baseline}' method's i.i.d. noise maps), mean with the paired bootstrap CI; below "
    "zero the method finds tiles that matter more than random ones."
)
NO_BASELINE = "Add a noise method to the job ({name: noise}) for curves relative to a random tile order."
MODES = {
    "top_down": ("Top-down cascading randomization: the maps after randomizing the network from the output down to "
                 "and including each stage", "randomized from the output down to and including"),
    "bottom_up": ("Bottom-up cascading randomization: the maps after randomizing the network from the input up to "
                  "and including each stage", "randomized from the input up to and including"),
    "independent": ("Single-layer randomization: the maps after randomizing one layer, the rest of the network "
                    "trained", "layer randomized alone (the rest trained)"),
    "split": ("Split randomization: the network kept up to a layer and randomized above it",
              "randomized from (the first module above the kept layer) up"),
}
CUMULATIVE = {"top_down", "bottom_up"}
RANDOMIZATION_CAPTION = (
    "{mode_text}. {metric} between the trained model's map and the randomized model's ({normalization}, {signed} "
    "maps), mean over {images} images with the bootstrap {confidence} CI of the mean. {bound}{better} "
    "Stages (randomized modules): {stages}."
)
BOUND_CAPTION = ("Dashed, in each method's colour: the {label} {formula} of that method's maps, the {metric} of "
                 "uncorrelated maps. ")
NORMALIZATION_TEXT = {"second_moment": "maps divided by the square root of their second moment",
                      "max_abs": "maps divided by their largest magnitude", "none": "maps not normalized"}


def occlusion_tag(kernel: int, dataset: str, offset: int = 0) -> str | None:
    """Paper Fig. 1 is k=15 on the first ImageNet images; supplement Fig. 2 (left) k=15 on further
    ImageNet images, Fig. 2 (right) COCO, Fig. 3 VOC; supplement Fig. 1 k=8."""
    if kernel == 15:
        if dataset == "imagenet" and offset > 0:
            return "supp-fig2a"
        return {"coco": "supp-fig2b", "voc": "supp-fig3"}.get(dataset, "paper-fig1")
    return "supp-fig1" if kernel == 8 else None


def randomization_tag(metric: str, dataset: str, normalization: str, absolute: bool,
                      mode: str = "top_down") -> str | None:
    """The paper figure a metric's plot reproduces (its registry entry: Fig. 2 = supplement Fig. 4 for
    SSIM, supplement Fig. 5 for MSE, Fig. 6 for SSIM on COCO); all top-down, with second-moment
    normalization of signed maps."""
    if normalization != "second_moment" or absolute or mode != "top_down" or metric not in METRICS:
        return None
    return METRICS[metric].paper_figure(dataset)


def _method_lines(axis, panel: pd.DataFrame, methods: list[str], colors) -> list[pd.DataFrame]:
    """Each method's curve with its CI band, in its own colour, line style and marker: the lines drawn."""
    lines = []
    for method in methods:
        line = panel[panel.method == method].sort_values("step")
        if len(line):
            _band(axis, line["step"].to_numpy(), line, colors.line(method), method)
            lines.append(line)
    return lines


def _band(axis, x, frame: pd.DataFrame, style: dict, label: str) -> None:
    axis.plot(x, frame["mean"].to_numpy(np.float64), label=label, markevery=max(1, len(x) // 12), **style)
    low, high = frame["ci_low"].to_numpy(np.float64), frame["ci_high"].to_numpy(np.float64)
    axis.fill_between(x, low, high, color=style["color"], alpha=0.15, linewidth=0)


def _points(axis, x, frame: pd.DataFrame, style: dict, label: str) -> None:
    """Means with CI bars (one-stage modes: no line between unrelated stages)."""
    mean = frame["mean"].to_numpy(np.float64)
    low = np.nan_to_num(mean - frame["ci_low"].to_numpy(np.float64))
    high = np.nan_to_num(frame["ci_high"].to_numpy(np.float64) - mean)
    axis.errorbar(x, mean, yerr=[np.maximum(low, 0), np.maximum(high, 0)], color=style["color"], marker=style["marker"],
                  markersize=5, linestyle="none", capsize=3, elinewidth=1.2, label=label)


def _panel_keys(frame: pd.DataFrame, keys: list[str]) -> list[tuple]:
    return list(frame[keys].drop_duplicates().sort_values(keys).itertuples(index=False, name=None))


def _legend(figure, colors: MethodColors, methods: list[str], extra: list[Line2D] = ()) -> None:
    handles = [Line2D([], [], label=m, **colors.line(m)) for m in methods] + list(extra)
    figure.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False)


def _images(frame: pd.DataFrame) -> int:
    return int(frame["count"].max()) if len(frame) else 0


def occlusion_figure(curves: pd.DataFrame, kernel: int, dataset: str, colors: MethodColors, methods: list[str],
                     confidence: float = 0.95, relative: pd.DataFrame | None = None, offset: int = 0) -> PaperFigure:
    """Mean occlusion curve per method, one row of panels per model: the curves, and (when the run has
    a random-order baseline) each curve minus the random-order one. ``curves``: the occlusion_curves
    aggregate; ``relative``: occlusion_relative."""
    data = curves[(curves.kernel == kernel) & (curves.dataset == dataset)]
    keys = _panel_keys(data, ["model"])
    relative = relative[(relative.kernel == kernel) & (relative.dataset == dataset)] if relative is not None else None
    has_relative = relative is not None and len(relative) > 0
    figure, axes = panels(len(keys) * (2 if has_relative else 1), columns=2 if has_relative else 3)
    drawn, drawn_relative = [], []
    for index, (model,) in enumerate(keys):
        axis = axes[index * (2 if has_relative else 1)]
        panel = data[data.model == model]
        drawn.extend(_method_lines(axis, panel, methods, colors))
        axis.set_title(f"{model} · {dataset} · k={kernel} · {_images(panel)} images", fontsize=9)
        axis.set_xlabel("occluded tiles t")
        axis.set_ylabel("softmax probability of the target")
        axis.grid(alpha=0.3)
        if has_relative:
            axis = axes[index * 2 + 1]
            panel = relative[relative.model == model]
            baseline = str(panel.baseline.iloc[0]) if len(panel) else "noise"
            axis.axhline(0.0, color=colors(baseline), linewidth=1.2, linestyle="--")
            drawn_relative.extend(_method_lines(axis, panel, methods, colors))
            axis.set_title(f"{model} · relative to random order ({baseline})", fontsize=9)
            axis.set_xlabel("occluded tiles t")
            axis.set_ylabel("Δ softmax vs. random tile order")
            axis.grid(alpha=0.3)
    _legend(figure, colors, [m for m in methods if m in set(data.method)])
    tag = occlusion_tag(kernel, dataset, offset)
    baseline = str(relative.baseline.iloc[0]) if has_relative else None
    return PaperFigure(
        name=figure_name(tag, "occlusion", f"k{kernel}", dataset),
        title=f"Occlusion curves, kernel {kernel} ({dataset})",
        caption=OCCLUSION_CAPTION.format(
            kernel=kernel, images=_images(data), confidence=f"{confidence:.0%}", better=AUC.better_text,
            relative=RELATIVE_CAPTION.format(baseline=baseline) if has_relative else NO_BASELINE),
        figure=figure,
        data={"curves": pd.concat(drawn, ignore_index=True) if drawn else data.iloc[:0],
              "relative": pd.concat(drawn_relative, ignore_index=True) if drawn_relative else data.iloc[:0]},
    )


def randomization_figure(stats: pd.DataFrame, metric: str, normalization: str, absolute: bool, dataset: str,
                         colors: MethodColors, methods: list[str], confidence: float = 0.95) -> PaperFigure:
    """Mean similarity per stage and method with CIs and each method's zero-covariance bound, one
    panel per model and mode; ``stats``: the randomization_stats aggregate."""
    data = stats[(stats.metric == metric) & (stats.normalization == normalization)
                 & (stats.absolute == absolute) & (stats.dataset == dataset)]
    keys = _panel_keys(data, ["model", "mode"])
    figure, axes = panels(len(keys), size=(5.0, 3.6))
    known = METRICS.get(metric)  # None: a metric this process did not register (plotted by its name)
    bound = known.bound if known is not None else None
    has_bound = bound is not None and data["bound_mean"].notna().any()
    metric_label = known.axis_label if known is not None else metric
    drawn = []
    for axis, (model, mode) in zip(axes, keys):
        panel = data[(data.model == model) & (data["mode"] == mode)]
        stages = panel[["stage", "layers"]].drop_duplicates("stage").sort_values("stage")
        position = {int(stage): i for i, stage in enumerate(stages.stage)}
        shown = [m for m in methods if m in set(panel.method)]
        cumulative = mode in CUMULATIVE and len(stages) > 1
        for rank, method in enumerate(shown):
            line = panel[panel.method == method].sort_values("stage")
            x = np.array([position[int(s)] for s in line.stage], dtype=np.float64)
            if not cumulative:  # side by side, so the CI bars of methods do not hide each other
                x = x + (rank - (len(shown) - 1) / 2) * min(0.8 / max(len(shown), 1), 0.15)
            style = colors.line(method)
            (_band if cumulative else _points)(axis, x, line, style, method)
            if has_bound:
                axis.plot(x, line["bound_mean"].to_numpy(np.float64), color=style["color"], linestyle="--",
                          linewidth=1.0, alpha=0.85, marker=None if cumulative else "_", markersize=12,
                          label=f"{method}: {bound.label}")
            drawn.append(line.assign(label=[stage_label(layers, mode) for layers in line.layers], x=x))
        stage_axis(axis, range(len(stages)), [stage_label(layers, mode) for layers in stages.layers],
                   MODES.get(mode, (None, f"stage ({mode})"))[1])
        axis.set_title(f"{model} · {dataset} · {mode.replace('_', '-')} · {_images(panel)} images", fontsize=9)
        axis.set_ylabel(f"{metric_label} to the trained model's map", fontsize=8)
        axis.grid(alpha=0.3)
        if not cumulative:
            axis.set_xlim(-0.6, len(stages) - 0.4)
    extra = [Line2D([], [], color=colors(m), linestyle="--", linewidth=1.0, label=f"{m}: {bound.label}")
             for m in methods if m in set(data.method)] if has_bound else []
    _legend(figure, colors, [m for m in methods if m in set(data.method)], extra)
    signed = "absolute" if absolute else "signed"
    modes = sorted(set(data["mode"]))
    mode = modes[0] if len(modes) == 1 else "modes"
    tag = randomization_tag(metric, dataset, normalization, absolute, mode)
    variant = [] if tag else ([mode] if mode != "top_down" else []) + [normalization] + (["abs"] if absolute else [])
    mode_text = " / ".join(MODES.get(mode, (f"Randomization ({mode})", ""))[0] for mode in modes)
    return PaperFigure(
        name=figure_name(tag, "randomization", metric, *variant, dataset),
        title=f"Randomization check: {metric} ({normalization}, {signed}; {dataset})",
        caption=RANDOMIZATION_CAPTION.format(
            mode_text=mode_text, metric=known.label if known else metric,
            normalization=NORMALIZATION_TEXT.get(normalization, normalization), signed=signed,
            images=_images(data), confidence=f"{confidence:.0%}",
            bound=BOUND_CAPTION.format(label=bound.label, formula=bound.formula, metric=metric_label)
            if has_bound else "",
            better=known.better_text if known else "", stages=stage_list(data[["stage", "layers"]]),
        ),
        figure=figure,
        data={"points": pd.concat(drawn, ignore_index=True) if drawn else data.iloc[:0]},
    )
