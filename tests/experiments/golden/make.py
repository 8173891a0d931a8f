"""Write the golden tables of every job in ``jobs/`` (see ``__init__``): ``python -m tests.experiments.golden.make``."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from . import JOBS, PLATFORM, TABLES, platform, run_job


def make() -> None:
    shutil.rmtree(TABLES, ignore_errors=True)
    for job in JOBS:
        with tempfile.TemporaryDirectory() as folder:
            tables = run_job(job, Path(folder) / "out")
        target = TABLES / job.stem
        target.mkdir(parents=True)
        for name, table in tables.items():
            pq.write_table(table, target / f"{name}.parquet", compression="zstd")
            print(f"{job.stem}/{name}: {table.num_rows} rows")
    PLATFORM.write_text(json.dumps(platform(), indent=2) + "\n")


if __name__ == "__main__":
    make()
