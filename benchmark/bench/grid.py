"""``benchmark bench --grid``: the default (probed) execution settings against a grid of fixed ones.

For every model and input size: the pipeline time with the settings the probe chooses, and with
every chunk size of the grid in both memory layouts, each measured ``runs`` times in turn (the
settings interleaved, so a drift of the machine's speed hits all of them alike) after a first,
uncounted run that probes; medians reported.
The figure of merit is default / best: how much the probe leaves on the table.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config.spec import JobSpec
from ..models.tuning import CHUNK_CANDIDATES, ExecutionSettings
from ..models.threads import intra_op_threads
from .pipeline import measure_pipeline

LAYOUTS = (True, False)


def grid_settings(chosen: ExecutionSettings, chunks: tuple[int, ...] = CHUNK_CANDIDATES) -> list[ExecutionSettings]:
    """Every chunk x layout, the other settings as the probe chose them."""
    return [replace(chosen, chunk_size=chunk, channels_last=layout) for chunk in chunks for layout in LAYOUTS]


def cell_spec(spec: JobSpec, model: str, size: int) -> JobSpec:
    dataset = spec.dataset.model_copy(update={"crop": size, "resize": None})
    return spec.model_copy(update={"model": spec.model.model_copy(update={"name": model}), "dataset": dataset})


def label(settings: ExecutionSettings) -> str:
    return f"{settings.chunk_size}/{'channels_last' if settings.channels_last else 'contiguous'}"


def measure_cell(spec: JobSpec, out: Path, runs: int, chunks: tuple[int, ...] = CHUNK_CANDIDATES) -> dict[str, Any]:
    """The default and every grid setting of one job, ``runs`` times each, interleaved.

    The first run probes the settings and is not counted (a process' first run pays one-time costs:
    measured 18.6 s against 6.6 s for the same settings later in the same cell). Where the probed
    settings are a grid point, the default's time is that point's: default / best then measures the
    choice alone, not the noise between two runs of the same settings."""
    probed = measure_pipeline(spec, str(out / "probe"))
    chosen = probed.runner.settings
    grid = grid_settings(chosen, chunks)
    in_grid = chosen in grid
    times: dict[str, list[float]] = {"default": []}
    with intra_op_threads(chosen.threads):
        for run in range(runs):
            if not in_grid:
                times["default"].append(measure_pipeline(spec, str(out / f"default-{run}"), settings=chosen).seconds)
            for settings in grid:
                seconds = measure_pipeline(spec, str(out / f"{label(settings)}-{run}".replace("/", "-")),
                                           settings=settings).seconds
                times.setdefault(label(settings), []).append(seconds)
    if in_grid:
        times["default"] = list(times[label(chosen)])
    medians = {name: statistics.median(values) for name, values in times.items()}
    best = min((name for name in medians if name != "default"), key=medians.__getitem__)
    return {
        "model": spec.model.name,
        "image_size": spec.dataset.crop,
        "images": probed.images,
        "default_settings": chosen.as_dict(),
        "default_label": label(chosen),
        "default_is_grid_point": in_grid,
        "probe_seconds": (probed.execution.probe or {}).get("seconds", 0.0),
        "first_run_seconds": probed.seconds,  # the probing run, not counted
        "seconds": times,
        "median_seconds": medians,
        "best": best,
        "default_over_best": medians["default"] / medians[best],
    }


def run_grid(spec: JobSpec, out: Path, models: list[str], sizes: list[int], runs: int = 1,
             chunks: tuple[int, ...] = CHUNK_CANDIDATES) -> list[dict[str, Any]]:
    cells = []
    for model in models:
        for size in sizes:
            cells.append(measure_cell(cell_spec(spec, model, size), out / f"{model}-{size}", runs, chunks))
    return cells


def format_grid(cells: list[dict[str, Any]]) -> str:
    lines = [
        "default (probed) execution settings against the grid (pipeline seconds, medians)",
        f"{'model':<12} {'px':>4} {'default':>22} {'s':>8} {'best of grid':>18} {'s':>8} {'default/best':>12}",
    ]
    for cell in cells:
        medians = cell["median_seconds"]
        lines.append(
            f"{cell['model']:<12} {cell['image_size']:>4} {cell['default_label']:>22} {medians['default']:>8.2f} "
            f"{cell['best']:>18} {medians[cell['best']]:>8.2f} {cell['default_over_best']:>12.3f}"
        )
    return "\n".join(lines)
