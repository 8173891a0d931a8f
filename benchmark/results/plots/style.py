"""What every figure shares: the Agg-only ``Figure`` (no pyplot state), panel grids, one colour,
line style and marker per method across all figures (identical curves stay visible), stage labels
on the x axis, file names that say which paper figure they reproduce, the data each figure drew
(``PaperFigure.data``, for tests and for readers of the figure), compact PNG encoding."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

PANEL = (4.2, 3.2)  # inches per panel
MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*", "<", ">")
# one per method, cycling; dashed ("--") is kept for the theoretical bounds
LINESTYLES = ("-", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 2)), (0, (6, 2)))


@dataclass
class PaperFigure:
    """A figure ready to save: ``name`` is the file stem (``<paper tag>_<what>_<where>``)."""

    name: str
    title: str
    caption: str
    figure: Figure
    files: list[str] = field(default_factory=list)  # written files, relative to the output
    png: bytes | None = None  # kept for the report
    data: dict[str, pd.DataFrame] = field(default_factory=dict)  # the series drawn, by name
    dpi: int = 120  # of the PNG (the PDF is vector)
    colors: int = 256  # of the PNG's palette

    def __post_init__(self) -> None:
        draw_literally(self.figure)


def draw_literally(figure: Figure) -> None:
    """Every text of the figure drawn as written. Labels come from users and files (method labels,
    image ids, layer names): a '$' in them is a dollar sign, not the start of math that matplotlib's
    mathtext parser would reject (``$\\foo{$``) or render as something else."""
    for text in figure.findobj(Text):
        text.set_parse_math(False)


def panels(count: int, columns: int = 3, size: tuple[float, float] = PANEL, **kwargs) -> tuple[Figure, list[Axes]]:
    """A figure with ``count`` panels in rows of ``columns``; unused cells are removed."""
    columns = max(1, min(columns, count))
    rows = max(1, math.ceil(count / columns))
    figure = Figure(figsize=(size[0] * columns + 2.2, size[1] * rows + 0.6), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False, **kwargs)
    axes = [axis for row in grid for axis in row]
    for axis in axes[count:]:
        axis.remove()
    return figure, axes[:count]


class MethodColors:
    """The same colour, line style and marker for a method in every figure of a run (order: the
    job's method list), so that methods with identical curves still show as separate lines."""

    def __init__(self, methods: Sequence[str]) -> None:
        palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
        self.colors = {method: palette(i % palette.N) for i, method in enumerate(methods)}

    def __call__(self, method: str):
        if method not in self.colors:
            palette = colormaps["tab20"]
            self.colors[method] = palette(len(self.colors) % palette.N)
        return self.colors[method]

    def line(self, method: str) -> dict[str, Any]:
        """Keyword arguments of ``Axes.plot`` for the method's line."""
        color = self(method)
        position = list(self.colors).index(method)
        return {"color": color, "linestyle": LINESTYLES[position % len(LINESTYLES)],
                "marker": MARKERS[position % len(MARKERS)], "markersize": 4, "linewidth": 1.6}


CUMULATIVE_MODES = ("top_down", "bottom_up")


def stage_label(layers: Any, mode: str | None = None) -> str:
    """The x label of a stage: the module it reaches (the full list goes in the caption). A
    cumulative stage lists its modules in walking order, so that is the last one (top-down: the
    lowest module randomized, the boundary); a single layer or a split: the first one."""
    names = list(layers) if layers is not None else []
    if not names:
        return "trained"
    return names[-1] if mode in CUMULATIVE_MODES else names[0]


def stage_axis(axis: Axes, positions: Sequence[float], labels: Sequence[str], title: str) -> None:
    """Stage names under the x axis, rotated, and the axis title."""
    axis.set_xticks(list(positions))
    axis.set_xticklabels(list(labels), rotation=45, ha="right", rotation_mode="anchor", fontsize=7)
    axis.set_xlabel(title, fontsize=8)


def stage_list(stages: pd.DataFrame) -> str:
    """'1: fc; 2: layer4.2.conv3, layer4.2.conv2' from a frame with ``stage`` and ``layers``."""
    rows = stages.drop_duplicates("stage").sort_values("stage")
    return "; ".join(f"{int(row.stage)}: {', '.join(list(row.layers)) or 'trained model'}"
                     for row in rows.itertuples(index=False))


def method_order(manifest: dict, present: Sequence[str]) -> list[str]:
    """Methods in the order of the job spec, then any others found in the data."""
    from ...config import JobSpec

    try:
        labels = [method.method_id for method in JobSpec.model_validate(manifest.get("spec", {})).methods]
    except ValueError:  # a spec this version cannot read: order by name
        labels = []
    ordered = [m for m in labels if m in present]
    return ordered + sorted(set(present) - set(ordered))


def slug(text: str) -> str:
    """A safe file-name part (image ids may hold slashes and dots)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-.") or "x"


def figure_name(tag: str | None, *parts: object) -> str:
    stem = "_".join(slug(p) for p in parts)
    return f"{tag}_{stem}" if tag else stem


def encode(figure: Figure, fmt: str, dpi: int = 120, colors: int = 256) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, metadata=None if fmt != "png" else {"Software": "benchmark"},
                   facecolor="white")
    return compact_png(buffer.getvalue(), colors) if fmt == "png" else buffer.getvalue()


def compact_png(data: bytes, colors: int = 256) -> bytes:
    """The PNG as an 8-bit palette of ``colors`` colours, no dithering: plots look the same at a
    fraction of the size, which keeps the self-contained report small. PDFs stay vector."""
    from PIL import Image

    image = Image.open(io.BytesIO(data)).convert("RGB")
    palette = image.quantize(colors=colors, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(data) else data
