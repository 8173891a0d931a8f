"""Every job of ``jobs/paper/`` runs end to end through the inline executor, on tiny synthetic images
with random weights (the same code path as a real run; only sizes and counts shrink)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from benchmark.cli.main import main
from benchmark.config import validate_job
from benchmark.results import OutputStore, read_table

PAPER_JOBS = sorted((Path(__file__).resolve().parents[2] / "jobs" / "paper").glob("**/*.yaml"))


def tiny(raw: dict) -> dict:
    """The job at CI size: 2 synthetic 32 px images, random weights, few stages, steps and seeds.

    These runs check that every job's code path runs and writes its tables, not any number: with
    random weights EfficientNet-B0 (supp_fig09) has gradients of ~1e-14 and all-zero LRP maps, which
    the run summary warns about (numbers on a trained network: tests/testbed)."""
    job = copy.deepcopy(raw)
    job["model"]["weights"] = "random"
    job["dataset"] = {"kind": "synthetic", "synthetic_images": 2, "shard_size": 2, "crop": 32}
    randomization = job.setdefault("randomization", {})
    randomization["seeds"] = randomization.get("seeds", [0])[:1]
    if randomization.get("layers"):
        randomization["layers"] = randomization["layers"][:2]
    elif randomization.get("mode", "top_down") in ("top_down", "bottom_up", "independent"):
        randomization["max_boundaries"] = 0  # the head stage only
    for method in job["methods"]:
        if "steps" in method:
            method["steps"] = 2
        if "samples" in method:
            method["samples"] = 2
    if job.get("smprt", {}).get("enabled"):
        job["smprt"]["samples"] = 2  # noisy copies per explanation (default 50)
    if job.get("occlusion", {}).get("enabled", True):
        job["occlusion"].update(kernels=[8], steps=3)
    job["runtime"] = {"device": "cpu", "batch_size": 2, "num_gpus": 0}
    return job


def expected_tables(job: dict) -> set[str]:
    spec = validate_job(job)
    tables = {"shards"}
    tables |= {"occlusion"} if spec.occlusion.enabled else set()
    tables |= {"randomization"} if spec.randomization.enabled else set()
    tables |= {"activations"} if spec.activations.enabled else set()
    tables |= {"logits"} if spec.logits.enabled else set()
    tables |= {"skip_path"} if spec.skip_path.enabled else set()
    tables |= {"kept_features"} if spec.kept_activation_explanation.enabled else set()
    if (spec.skip_path.enabled and spec.skip_path.save_maps) or (
        spec.kept_activation_explanation.enabled and spec.kept_activation_explanation.save_maps
    ):
        tables.add("maps")
    return tables


def test_there_is_a_job_for_every_figure() -> None:
    names = {"_".join(path.stem.split("_")[: 2 if path.stem.startswith("supp") else 1]) for path in PAPER_JOBS}
    assert {"fig1", "fig2", "fig4", "fig5", "fig7"} <= names  # Fig. 3 and 6 are diagrams
    assert {f"supp_fig{k:02d}" for k in (1, 3, 4, 5, 6, 7, 8, 9, 10)} | {"supp_fig02a", "supp_fig02b"} <= names


@pytest.mark.parametrize("path", PAPER_JOBS, ids=lambda p: p.stem)
def test_paper_job_runs_on_tiny_inputs(path: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert path.read_text().lstrip().startswith("#"), "every paper job starts with a comment citing its section"
    job = tiny(raw)
    job_file = tmp_path / path.name
    job_file.write_text(yaml.safe_dump(job))
    out = tmp_path / "out"
    assert main(["run", str(job_file), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    for table in expected_tables(job):
        assert read_table(store, table).num_rows > 0, f"{path.name}: no rows in '{table}'"
    assert not list(out.glob("errors/**/*.parquet")), f"{path.name}: errors were recorded"
