"""What every figure shares: the Agg-only ``Figure`` (no pyplot state), panel grids, one colour
per method across all figures, file names that say which paper figure they reproduce, saving."""

from __future__ import annotations

import io
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.text import Text

PANEL = (4.2, 3.2)  # inches per panel


@dataclass
class PaperFigure:
    """A figure ready to save: ``name`` is the file stem (``<paper tag>_<what>_<where>``)."""

    name: str
    title: str
    caption: str
    figure: Figure
    files: list[str] = field(default_factory=list)  # written files, relative to the output
    png: bytes | None = None  # kept for the report

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
    """The same colour for a method in every figure of a run (order: the job's method list)."""

    def __init__(self, methods: Sequence[str]) -> None:
        palette = colormaps["tab10" if len(methods) <= 10 else "tab20"]
        self.colors = {method: palette(i % palette.N) for i, method in enumerate(methods)}

    def __call__(self, method: str):
        if method not in self.colors:
            palette = colormaps["tab20"]
            self.colors[method] = palette(len(self.colors) % palette.N)
        return self.colors[method]


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


def encode(figure: Figure, fmt: str, dpi: int = 120) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, metadata=None if fmt != "png" else {"Software": "benchmark"})
    return buffer.getvalue()
