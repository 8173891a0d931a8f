"""Numbers do not depend on where they ran (DESIGN §11): inline, one Ray actor, two Ray actors and a
resume on another executor give bitwise-equal tables, because every worker runs torch with the
spec's ``runtime.threads`` (torch's thread count changes float reduction order). Keys that do change
numbers (threads, batch and chunk sizes) are part of the spec hash, so a resume cannot mix them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch

from benchmark.cli.main import main
from benchmark.config import validate_job
from benchmark.config.load import spec_hash
from benchmark.engine.manifest import ResumeRefused, check_resume, new_manifest
from benchmark.results import OutputStore

from .jobs import TINY, write_job
from .ray_support import ThreadReportingRunner, assert_exactly_once, comparable, run_executor

ray = pytest.importorskip("ray")

# Three shards of two images, a batch of two, every kind of pass: plain and path gradients (IG steps
# accumulate), rule-hooked backward passes, occlusion forwards; two top-down stages. ResNet-50: its
# wide 1x1 convolutions are where torch (oneDNN) splits reductions across threads at this size, so
# with 1 and 2 threads its gradients differ (ResNet-34's do not here) and this test would catch a
# worker that ran with the machine's thread count.
JOB = {
    **TINY,
    "name": "determinism",
    "model": {"name": "resnet50", "weights": "random"},
    "dataset": {**TINY["dataset"], "synthetic_images": 6},
    "randomization": {"seeds": [0], "max_boundaries": 1},
    "methods": [
        {"name": "gradient"},
        {"name": "integrated_gradients", "steps": 4},
        {"name": "guided_backprop"},
        {"name": "lrp", "composite": "epsilon_plus_flat"},
        {"name": "noise"},
    ],
    "metrics": {"normalizations": ["second_moment"], "absolute": [False, True]},
    "occlusion": {"kernels": [8], "steps": 4},
    # chunk, layout and folding pinned: the inline and Ray runs below are independent runs, and 'auto' is decided
    # per run by a timing probe; a resume reuses the run's decision (test_a_resume_of_a_tuned_run_...). The
    # occlusion forwards go through the BatchNorm-folded copy: rebuilt in every actor, bitwise the same.
    "runtime": {"device": "cpu", "batch_size": 2, "num_gpus": 0, "num_cpus": 1, "chunk_size": 8, "channels_last": True,
                "fold_batchnorm": True},
}
SHARDS = [0, 1, 2]


def assert_bitwise_equal(got: dict[str, pd.DataFrame], expected: dict[str, pd.DataFrame]) -> None:
    for table, frame in expected.items():
        assert len(got[table]) == len(frame) > 0, table
        pd.testing.assert_frame_equal(got[table], frame, check_exact=True, obj=table)


@pytest.fixture(scope="module")
def inline_run(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("inline")
    threads = torch.get_num_threads()
    assert main(["run", str(write_job(folder, JOB)), "--executor", "inline", "--out", str(folder / "out"),
                 "--no-progress"]) == 0
    assert torch.get_num_threads() == threads  # restored after the run
    return folder / "out"


@pytest.fixture(scope="module")
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("actors", [1, 2])
def test_ray_with_one_or_two_actors_equals_the_inline_run_bitwise(local_ray, inline_run, tmp_path, actors) -> None:
    job = {**JOB, "runtime": {**JOB["runtime"], "actors": actors}}  # execution-only: the same spec hash
    assert spec_hash(validate_job(job)) == spec_hash(validate_job(JOB))
    out = tmp_path / "out"
    _, outcome = run_executor(job, out, runner_factory=ThreadReportingRunner)
    assert outcome.ok and outcome.details["actors"] == actors
    assert {tuple(summary["threads_seen"]) for summary in outcome.completed} == {(1,)}  # runtime.threads
    assert_exactly_once(out, SHARDS)
    assert_bitwise_equal(comparable(out), comparable(inline_run))


def test_a_resume_on_ray_completes_an_inline_run_bitwise(local_ray, inline_run, tmp_path) -> None:
    out = tmp_path / "out"
    shutil.copytree(inline_run, out)
    store = OutputStore(str(out))
    for shard in (1, 2):  # as if the inline run had stopped after its first shard
        store.delete(f"_commits/shard-{shard}.json")
    state, outcome = run_executor({**JOB, "runtime": {**JOB["runtime"], "actors": 2}}, out)
    assert sorted(summary["shard"] for summary in outcome.completed) == [1, 2]
    assert_bitwise_equal(comparable(out), comparable(inline_run))


def test_a_resume_on_ray_of_a_tuned_run_uses_its_recorded_settings_bitwise(local_ray, tmp_path, monkeypatch) -> None:
    """Every setting 'auto': the inline run's probe (fake timings: 16 inputs per pass, contiguous layout)
    decides; the Ray actors that finish the run read the decision from the manifest, not from a probe."""
    def measure(self, point) -> float:
        return 1e-4 * {8: 1.0, 16: 0.8}.get(point.size, 1.2) * (1.0 if point.channels_last else 0.7)

    monkeypatch.setattr("benchmark.engine.tuning.PassProbe.__call__", measure)
    job = {**JOB, "runtime": {"device": "cpu", "batch_size": 2, "num_gpus": 0, "num_cpus": 1}}
    inline = tmp_path / "inline"
    assert main(["run", str(write_job(tmp_path, job)), "--executor", "inline", "--out", str(inline), "--no-progress"]) == 0
    recorded = OutputStore(str(inline)).read_json("manifest.json")["execution"]["settings"]
    assert (recorded["chunk_size"], recorded["channels_last"]) == (16, False)
    out = tmp_path / "out"
    shutil.copytree(inline, out)
    store = OutputStore(str(out))
    for shard in (1, 2):
        store.delete(f"_commits/shard-{shard}.json")
    monkeypatch.setattr("benchmark.engine.tuning.PassProbe.__call__", lambda self, point: 1 / 0)  # no probe now
    _, outcome = run_executor({**job, "runtime": {**job["runtime"], "actors": 2}}, out,
                              runner_factory=ThreadReportingRunner)
    assert sorted(summary["shard"] for summary in outcome.completed) == [1, 2]
    assert [s["execution_seen"] for s in outcome.completed] == [{"chunk_size": 16, "channels_last": False}] * 2
    assert_bitwise_equal(comparable(out), comparable(inline))


def test_the_inline_executor_runs_with_the_specs_threads(tmp_path, monkeypatch) -> None:
    from benchmark.experiments.batch import BatchEvaluator

    seen: list[int] = []
    evaluate = BatchEvaluator.evaluate
    monkeypatch.setattr(
        BatchEvaluator, "evaluate", lambda self, *a, **k: seen.append(torch.get_num_threads()) or evaluate(self, *a, **k)
    )
    job = {**JOB, "methods": [{"name": "gradient"}], "runtime": {**JOB["runtime"], "threads": 3}}
    before = torch.get_num_threads()
    assert main(["run", str(write_job(tmp_path, job)), "--executor", "inline", "--out", str(tmp_path / "out"),
                 "--no-progress"]) == 0
    assert seen == [3, 3, 3] and torch.get_num_threads() == before
    manifest = OutputStore(str(tmp_path / "out")).read_json("manifest.json")
    assert manifest["threads"] == 3 and manifest["spec"]["runtime"]["threads"] == 3


@pytest.mark.parametrize(
    "key, value, changes_numbers",
    [
        ("threads", 2, True),  # float reduction order
        ("batch_size", 3, True),  # which images share a convolution's batch
        ("chunk_size", 3, True),  # which inputs share a pass
        ("channels_last", False, True),  # another convolution kernel
        ("fold_batchnorm", False, True),  # occlusion forwards with BatchNorms as their own pass
        ("precision", "tf32", True),  # on a GPU: matmul rounding
        ("tuning_seconds", 1, False),  # a resume takes the recorded settings, however long the first probe was
        ("actors", 4, False),
        ("in_flight", 1, False),
        ("max_attempts", 5, False),
        ("num_cpus", 2, False),
        ("num_gpus", 1, False),
    ],
)
def test_keys_that_change_numbers_are_in_the_spec_hash_and_refuse_a_resume(key, value, changes_numbers) -> None:
    before, after = validate_job(JOB), validate_job({**JOB, "runtime": {**JOB["runtime"], key: value}})
    assert (spec_hash(before) != spec_hash(after)) is changes_numbers
    previous = new_manifest(before)
    if changes_numbers:
        with pytest.raises(ResumeRefused, match=f"runtime.{key}"):
            check_resume(previous, after)
    else:
        check_resume(previous, after)
