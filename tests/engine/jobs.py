"""Tiny job specs for end-to-end tests: seconds on a 2-core CPU."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from benchmark.results import OutputStore, read_table

TINY = {
    "name": "tiny",
    "model": {"name": "resnet34", "weights": "random"},
    "dataset": {"kind": "synthetic", "synthetic_images": 5, "shard_size": 2, "crop": 32},
    "randomization": {"seeds": [0, 1], "max_boundaries": 1},
    "methods": [{"name": "gradient"}, {"name": "lrp", "composite": "epsilon_plus_flat"}, {"name": "noise"}],
    "metrics": {"normalizations": ["second_moment", "none"]},
    "occlusion": {"kernels": [8], "steps": 6},
    # chunk, layout and folding pinned: tests compare independent runs bit for bit, and 'auto' is decided per run by
    # a timing probe (two fresh runs may choose differently; a resume reuses the choice: tests/engine/test_tuning.py)
    "runtime": {"device": "cpu", "batch_size": 2, "num_gpus": 0, "chunk_size": 8, "channels_last": True,
                "fold_batchnorm": False},
}


def write_job(folder: Path, spec: dict = TINY, name: str = "job.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


def sorted_rows(out: Path | str, table: str) -> pd.DataFrame:
    """All committed rows of a table, in a canonical order (runs finish shards in any order)."""
    frame = read_table(OutputStore(str(out)), table).to_pandas()
    keys = [c for c in ("image_id", "method", "seed", "stage", "metric", "normalization", "absolute", "kernel") if c in frame]
    return frame.sort_values(keys).reset_index(drop=True)
