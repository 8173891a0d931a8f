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


def checks_job() -> dict:
    """The repaired checks on the trained network: 16 digits, two seeds, the methods the literature
    separates (gradient family, guided backprop, LRP seeded with 1 and with the logit, noise)."""
    job = digits_job()
    job["dataset"].update(limit=16, shard_size=16)
    job["randomization"]["seeds"] = [0, 1]
    job["methods"] = [
        {"name": "gradient"},
        {"name": "gradient_x_input"},
        {"name": "guided_backprop"},
        {"name": "lrp", "composite": "epsilon_plus_flat"},
        {"name": "lrp", "composite": "epsilon_plus_flat", "output_relevance": "logit"},
        {"name": "noise"},
    ]
    job["runtime"] = {"device": "cpu", "batch_size": 16}
    job.update(
        smprt={"enabled": True, "samples": 4},
        emprt={"enabled": True},
        random_logit={"enabled": True},
        mprt_invariant_mask={"enabled": True},
        mprt_non_baseline={"enabled": True},
    )
    return job


@pytest.fixture(scope="session")
def checks_run(testbed, tmp_path_factory) -> Path:
    """The pipeline with every repaired check on the trained network, aggregated."""
    return run_and_aggregate(tmp_path_factory, "digits-checks", checks_job())


def gap_job() -> dict:
    """Faithfulness in both orders and with both imputers next to the plain check, on the trained network:
    16 digits, one seed, 8x8 tiles (16 of them: the last step occludes every tile)."""
    job = digits_job()
    job["dataset"].update(limit=16, shard_size=16)
    job["methods"] = [
        {"name": "gradient_x_input"},
        {"name": "guided_backprop"},
        {"name": "lrp", "composite": "epsilon_plus_flat"},
        {"name": "lrp", "composite": "epsilon_plus_flat", "output_relevance": "logit"},
        {"name": "noise"},
    ]
    job["occlusion"] = {"kernels": [8], "steps": 16, "blur_kernel": 7, "orders": ["mif", "lif"],
                        "imputers": ["blur", "mean"]}
    job["runtime"] = {"device": "cpu", "batch_size": 16}
    return job


@pytest.fixture(scope="session")
def gap_run(testbed, tmp_path_factory) -> Path:
    """Both orders and imputers with the plain check on the trained network, aggregated."""
    return run_and_aggregate(tmp_path_factory, "digits-gap", gap_job(), "--resamples", "500")


def run_and_aggregate(tmp_path_factory, name: str, job: dict, *aggregate_options: str) -> Path:
    """``benchmark run`` (inline) and ``benchmark aggregate`` of ``job`` in a fresh folder: its output."""
    from benchmark.cli.main import main

    folder = tmp_path_factory.mktemp(name)
    job_file = folder / "job.yaml"
    job_file.write_text(yaml.safe_dump(job))
    out = folder / "out"
    assert main(["run", str(job_file), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    assert main(["aggregate", str(out), "--no-progress", *aggregate_options]) == 0
    return out
