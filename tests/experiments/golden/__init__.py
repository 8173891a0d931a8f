"""Golden outputs: whole tables of small jobs, as the code before the one-state-walk redesign wrote them.

``jobs/*.yaml`` together enable every experiment (every randomization mode, every target policy,
logits, skip path, kept-layer explanation, activations, occlusion, saved maps). ``tables/<job>/``
holds each table of each job with its rows in a canonical order; ``platform.json`` says where they
were made (torch version, CPU capability, thread count): float results are bit-identical only on
the same kernels, so elsewhere the comparison is skipped with that reason. Regenerate (only when a
change of numbers is intended, and say so in the commit) with
``PYTHONPATH=. python -m tests.experiments.golden.make``.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import torch

from benchmark.cli.main import main
from benchmark.results import OutputStore, read_table

HERE = Path(__file__).parent
JOBS = sorted((HERE / "jobs").glob("*.yaml"))
TABLES = HERE / "tables"
PLATFORM = HERE / "platform.json"
COMPARED = ("randomization", "occlusion", "activations", "logits", "skip_path", "kept_features", "maps", "errors")
THREADS = 1


def platform() -> dict[str, object]:
    return {
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": THREADS,
    }


@contextmanager
def fixed_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_job(job: Path, out: Path) -> dict[str, pa.Table]:
    """Run ``job`` inline into ``out``; every compared table with rows, canonically ordered."""
    with fixed_threads():
        assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    tables = {name: canonical(read_table(store, name)) for name in COMPARED}
    return {name: table for name, table in tables.items() if table.num_rows}


def _exact(value: object) -> object:
    """A sortable, exact stand-in of a cell: floats by their hex digits (NaN and -0.0 kept apart)."""
    if isinstance(value, float):
        return ("f", value.hex())
    if isinstance(value, list):
        return ("l", tuple(_exact(v) for v in value))
    if value is None:
        return ("n",)
    return (type(value).__name__, value)


def row_keys(table: pa.Table) -> list[tuple]:
    columns = [table.column(name).to_pylist() for name in table.column_names]
    return [tuple(_exact(column[i]) for column in columns) for i in range(table.num_rows)]


def canonical(table: pa.Table) -> pa.Table:
    """The rows sorted by every cell, exactly (the order shards and batches finish in is not part of a result)."""
    keys = row_keys(table)
    order = sorted(range(table.num_rows), key=keys.__getitem__)
    return table.take(pa.array(order, pa.int64()))


# What later changes added to the tables on purpose, taken out before the comparison so that the
# rest stays compared bit for bit: issue 14 saves the input image with the skip-path and kept-layer
# maps (rows of kind 'input') and the class each of their maps explains (was null).
FIGURE_MAPS = ("skip_path", "kept_features")


def without_later_additions(name: str, table: pa.Table) -> pa.Table:
    if name == "occlusion":  # issue 13: the order and the imputer of each curve; the golden jobs run the paper's
        assert set(table.column("order").to_pylist()) == {"mif"} and set(table.column("imputer").to_pylist()) == {"blur"}
        return table.drop_columns(["order", "imputer"])
    if name != "maps":
        return table
    figure = pc.is_in(table.column("experiment"), pa.array(FIGURE_MAPS))
    table = table.filter(pc.invert(pc.and_(figure, pc.equal(table.column("kind"), "input"))))
    figure = pc.is_in(table.column("experiment"), pa.array(FIGURE_MAPS))
    target = pc.if_else(figure, pa.scalar(None, pa.int32()), table.column("target"))
    table = table.set_column(table.column_names.index("target"), table.schema.field("target"), target)
    return canonical(table)


def load_platform() -> dict[str, object]:
    return json.loads(PLATFORM.read_text())
