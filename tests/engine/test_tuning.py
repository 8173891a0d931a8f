"""A run's execution settings: probed once at its start (fake timings here), recorded in the manifest,
printed, used by every worker and kept on resume; explicit runtime values are never probed."""

from __future__ import annotations

import shutil

import pytest
import torch

from benchmark.bench.accounting import expected_passes
from benchmark.cli.main import main
from benchmark.config import validate_job
from benchmark.engine.driver import prepare_run
from benchmark.engine.shard import ShardRunner
from benchmark.engine.tuning import EXECUTION, workload
from benchmark.experiments.batch import BatchEvaluator
from benchmark.models import load_model, plan_for
from benchmark.models.tuning import ExecutionSettings, Point
from benchmark.results import OutputStore

from .jobs import TINY, sorted_rows, write_job

AUTO = {
    **TINY,
    "name": "tuned",
    "methods": [{"name": "gradient"}, {"name": "integrated_gradients", "steps": 3}, {"name": "guided_backprop"},
                {"name": "noise"}],
    "runtime": {"device": "cpu", "batch_size": 2, "num_gpus": 0},  # every execution setting 'auto'
}


def fake_probe(monkeypatch, calls: list[Point] | None = None) -> list[Point]:
    """Timings that favour 16 inputs per pass in the contiguous layout, with a replay cheaper than a fresh pass."""
    calls = [] if calls is None else calls

    def measure(self, point: Point) -> float:
        calls.append(point)
        per_input = {8: 1.0, 16: 0.8, 32: 0.9, 64: 1.0}.get(point.size, 1.2) * (1.0 if point.channels_last else 0.7)
        return 1e-4 * per_input * (0.5 if point.replay else 1.0)  # small: the probe's budget is real seconds

    monkeypatch.setattr("benchmark.engine.tuning.PassProbe.__call__", measure)
    return calls


def refuse_probe(monkeypatch) -> None:
    def measure(self, point: Point) -> float:
        raise AssertionError(f"probed {point} although the settings were decided")

    monkeypatch.setattr("benchmark.engine.tuning.PassProbe.__call__", measure)


def test_a_run_probes_once_records_prints_and_its_workers_use_the_settings(tmp_path, monkeypatch, capsys) -> None:
    calls = fake_probe(monkeypatch)
    job = write_job(tmp_path, AUTO)
    assert main(["run", str(job), "--executor", "inline", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    manifest = OutputStore(str(tmp_path / "out")).read_json("manifest.json")
    execution = manifest[EXECUTION]
    assert execution["settings"] == {"chunk_size": 16, "channels_last": False, "threads": 1,
                                     "reuse_bottom_forward": True, "precision": "fp32", "fold_batchnorm": False}
    assert execution["chosen_by"]["chunk_size"] == "probe" and execution["chosen_by"]["channels_last"] == "probe"
    assert execution["chosen_by"]["threads"] == "1 CPU per worker (runtime.num_cpus)"
    assert manifest["threads"] == 1 and manifest["precision"] == "fp32"
    assert execution["probe"]["measurements"] and len(calls) == len(execution["probe"]["measurements"])
    assert manifest["spec"]["runtime"]["chunk_size"] == "auto"  # the spec as given; its hash does not move
    printed = capsys.readouterr().err
    assert "execution: chunk 16, contiguous layout, 1 thread, forward reuse on, fp32 on cpu" in printed
    assert "probed in" in printed

    # a worker of this run (an actor, the inline loop) computes with the recorded settings
    runner = ShardRunner(validate_job(AUTO), str(tmp_path / "out"))
    assert runner.settings == ExecutionSettings(16, False, 1, True, "fp32")
    assert runner.evaluator.chunk_size == 16
    conv = runner.model.module.conv1.weight
    assert conv.is_contiguous() and not conv.is_contiguous(memory_format=torch.channels_last)


def test_a_resume_keeps_the_recorded_settings_without_probing(tmp_path, monkeypatch, capsys) -> None:
    fake_probe(monkeypatch)
    job = write_job(tmp_path, AUTO)
    out = tmp_path / "out"
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    reference = sorted_rows(out, "randomization")
    first = OutputStore(str(out)).read_json("manifest.json")[EXECUTION]
    store = OutputStore(str(out))
    for shard in (1, 2):
        store.delete(f"_commits/shard-{shard}.json")
    refuse_probe(monkeypatch)
    capsys.readouterr()
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    assert "recorded at the run's first attempt" in capsys.readouterr().err
    assert OutputStore(str(out)).read_json("manifest.json")[EXECUTION] == first
    assert sorted_rows(out, "randomization").equals(reference)


def test_a_new_run_probes_again(tmp_path, monkeypatch) -> None:
    fake_probe(monkeypatch)
    prepare_run(validate_job(AUTO), str(tmp_path / "out"))
    calls = fake_probe(monkeypatch)
    prepare_run(validate_job(AUTO), str(tmp_path / "out"), new_run=True)
    assert calls


def test_explicit_values_are_used_as_given_and_nothing_is_probed(tmp_path, monkeypatch) -> None:
    refuse_probe(monkeypatch)
    job = {**AUTO, "runtime": {**AUTO["runtime"], "chunk_size": 3, "channels_last": False, "threads": 2,
                               "reuse_bottom_forward": False, "precision": "tf32", "fold_batchnorm": True}}
    state = prepare_run(validate_job(job), str(tmp_path / "out"))
    assert state.manifest[EXECUTION]["settings"] == {"chunk_size": 3, "channels_last": False, "threads": 2,
                                                     "reuse_bottom_forward": False, "precision": "tf32",
                                                     "fold_batchnorm": True}
    assert set(state.manifest[EXECUTION]["chosen_by"].values()) == {"runtime"}
    assert state.manifest["threads"] == 2


def test_no_budget_means_the_fallbacks(tmp_path, monkeypatch) -> None:
    refuse_probe(monkeypatch)
    state = prepare_run(validate_job({**AUTO, "runtime": {**AUTO["runtime"], "tuning_seconds": 0}}), str(tmp_path / "o"))
    assert state.manifest[EXECUTION]["settings"]["chunk_size"] == 8
    assert state.manifest[EXECUTION]["settings"]["channels_last"] is True


def test_a_driver_without_the_runs_device_records_the_fallbacks(tmp_path, monkeypatch) -> None:
    """A CPU head of a GPU cluster cannot probe CUDA: the run starts with the fallbacks, says why, and
    the workers (which have the device, or report that they have not) use them."""
    refuse_probe(monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    state = prepare_run(validate_job({**AUTO, "runtime": {**AUTO["runtime"], "device": "cuda"}}), str(tmp_path / "o"))
    execution = state.manifest[EXECUTION]
    assert execution["settings"]["precision"] == "tf32" and execution["settings"]["chunk_size"] == 8
    assert execution["chosen_by"]["chunk_size"] == "fallback (no cuda device on the driver to probe)"


def test_the_probed_workload_is_the_jobs_declared_passes(tmp_path) -> None:
    job = {**AUTO, "randomization": {"seeds": [0, 1], "max_boundaries": 1, "target": "own_prediction"},
           "methods": AUTO["methods"] + [{"name": "lrp", "composite": "epsilon_plus_flat"}, {"name": "gradient_x_input"}]}
    spec = validate_job(job)
    model = load_model(spec, torch.device("cpu"))
    evaluator = BatchEvaluator(spec, model, plan_for(spec, model.module, model.definition))
    kinds = workload(evaluator, images=2)
    expected = expected_passes(evaluator)
    assert sum(k.per_image for k in kinds if k.backward) == expected.forward_backward
    assert sum(k.per_image for k in kinds if not k.backward) == expected.forward_only
    by_name = {(k.name, k.steps): k.per_image for k in kinds if k.backward}
    states = 1 + 2 * 2
    # gradient and gradient x input share one plain pass; IG 3 steps; one pass each under guided / LRP rules
    assert by_name == {("plain", 1): states, ("plain", 3): 3 * states, ("guided_backprop", 1): states,
                       ("lrp_epsilon_plus_flat", 1): states}


def test_a_method_whose_passes_are_not_known_in_advance_is_left_out_of_the_probed_workload(tmp_path) -> None:
    """A user's callable without declared passes (README example) is probed without: the known kinds only."""
    job = {**AUTO, "methods": [{"name": "gradient"}, {"name": "jobs/examples/explain.py:input_x_gradient"}]}
    spec = validate_job(job)
    model = load_model(spec, torch.device("cpu"))
    evaluator = BatchEvaluator(spec, model, plan_for(spec, model.module, model.definition))
    assert evaluator.methods[1].passes() is None
    kinds = workload(evaluator, images=2)
    assert {(k.name, k.backward) for k in kinds} == {("plain", True), ("forward", False)}
    assert sum(k.per_image for k in kinds if k.backward) == expected_passes(evaluator).forward_backward


@pytest.mark.parametrize("keys", [["chunk_size"], ["channels_last"]])
def test_a_changed_execution_setting_refuses_the_resume_of_a_tuned_run(tmp_path, monkeypatch, keys) -> None:
    """'auto' is part of the spec hash: pinning the value the probe chose is a different spec."""
    fake_probe(monkeypatch)
    prepare_run(validate_job(AUTO), str(tmp_path / "out"))
    pinned = {**AUTO, "runtime": {**AUTO["runtime"], **{key: {"chunk_size": 16, "channels_last": False}[key] for key in keys}}}
    from benchmark.engine.manifest import ResumeRefused

    with pytest.raises(ResumeRefused, match=f"runtime.{keys[0]}"):
        prepare_run(validate_job(pinned), str(tmp_path / "out"))
    shutil.rmtree(tmp_path / "out")
