"""Fixtures of the results tests: one real (tiny) run per session, and hand-made outputs.

The real run goes through `benchmark run` exactly as a user's would (ResNet-34 with random
weights on 5 synthetic 32 px images, 3 methods, 2 seeds, 2 stages, occlusion kernels 8 and 4,
maps saved for the first 3 images): about 30 s on two cores, shared by every test that needs
real output. Tests that change an output work on a copy.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from benchmark.cli.main import main

from ..engine.jobs import TINY, write_job

RUN_JOB = {
    **TINY,
    "name": "results-tiny",
    "occlusion": {"kernels": [8, 4], "steps": 6},
    "runtime": {**TINY["runtime"], "save_maps": 3},
}
IMAGES, METHODS, SEEDS, STAGES, SAVED = 5, ["gradient", "lrp_epsilon_plus_flat", "noise"], [0, 1], [1, 2], 3


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """The committed output of a real run (do not modify: copy it with ``run_copy``)."""
    folder = tmp_path_factory.mktemp("tiny-run")
    job = write_job(folder, RUN_JOB)
    assert main(["run", str(job), "--executor", "inline", "--out", str(folder / "out"), "--no-progress"]) == 0
    return folder / "out"


@pytest.fixture(scope="session")
def aggregated_run(tiny_run, tmp_path_factory) -> Path:
    """A copy of the real run with its aggregates written by `benchmark aggregate`."""
    out = tmp_path_factory.mktemp("aggregated") / "out"
    shutil.copytree(tiny_run, out)
    assert main(["aggregate", str(out), "--no-progress", "--resamples", "500"]) == 0
    return out


@pytest.fixture
def run_copy(tiny_run, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(tiny_run, out)
    return out
