"""The trained-network test bed, once per machine (cached by content hash; about 10 CPU-seconds to
train where the cache is empty), and one inline run of the project's pipeline on it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def testbed():
    from benchmark.testbed import testbed

    return testbed()


def digits_job(**overrides) -> dict:
    """jobs/digits.yaml at test size: 24 validation digits, one seed, no occlusion, maps saved."""
    job = copy.deepcopy(yaml.safe_load((ROOT / "jobs" / "digits.yaml").read_text()))
    job["dataset"].update(limit=24, shard_size=24)
    job["randomization"]["seeds"] = [0]
    job["methods"] = [
        {"name": "gradient"},
        {"name": "gradient_x_input"},
        {"name": "integrated_gradients", "steps": 16},
        {"name": "guided_backprop"},
        {"name": "lrp", "composite": "epsilon_plus_flat"},
        {"name": "lrp", "composite": "epsilon_plus_flat", "output_relevance": "logit"},
        {"name": "noise"},
    ]
    job["metrics"] = {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False, True]}
    job["occlusion"] = {"enabled": False}
    job["activations"] = {"enabled": False}
    job["logits"] = {"enabled": False}
    job["runtime"] = {"device": "cpu", "batch_size": 24, "save_maps": 24}
    job.update(overrides)
    return job


@pytest.fixture(scope="session")
def digits_run(testbed, tmp_path_factory) -> Path:
    """The pipeline (``benchmark run --executor inline``) on the trained network."""
    from benchmark.cli.main import main

    folder = tmp_path_factory.mktemp("digits")
    job = folder / "digits.yaml"
    job.write_text(yaml.safe_dump(digits_job()))
    assert main(["run", str(job), "--executor", "inline", "--out", str(folder / "out"), "--no-progress"]) == 0
    return folder / "out"
