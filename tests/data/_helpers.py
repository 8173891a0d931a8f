"""A tiny evaluation job for end-to-end runs on the fixtures: seconds on a CPU."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY_JOB = {
    "name": "fixture-run",
    "model": {"name": "resnet34", "weights": "random"},
    "dataset": {"kind": "synthetic", "crop": 32, "shard_size": 4},
    "randomization": {"mode": "top_down", "seeds": [0], "max_boundaries": 1},
    "methods": [{"name": "gradient"}],
    "metrics": {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False]},
    "occlusion": {"kernels": [8], "steps": 3},
    "runtime": {"device": "cpu", "batch_size": 4, "chunk_size": 16, "num_gpus": 0},
}


def tiny_job(folder: Path) -> Path:
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(TINY_JOB))
    return path


def run_args(job: Path, out: Path, **overrides: object) -> list[str]:
    """``benchmark run`` arguments: inline executor, no progress bar, ``--set key=value`` per override."""
    args = ["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]
    for key, value in overrides.items():
        args += ["--set", f"{key.replace('__', '.')}={value}"]
    return args
