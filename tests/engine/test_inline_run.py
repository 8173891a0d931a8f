"""`benchmark run --executor inline` end to end: tables, manifest, resume, failures, weights."""

from __future__ import annotations

import json
import urllib.error
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from benchmark.cli.main import main
from benchmark.results import OutputStore, committed_shards, read_table

from .jobs import TINY, sorted_rows, write_job

SHARDS, IMAGES = 3, 5  # 5 images, shards of 2


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("run")
    job = write_job(folder)
    assert main(["run", str(job), "--executor", "inline", "--out", str(folder / "out"), "--no-progress"]) == 0
    return job, folder / "out"


def test_tables_have_one_row_per_grid_cell(finished_run) -> None:
    _, out = finished_run
    store = OutputStore(str(out))
    randomization = read_table(store, "randomization").to_pandas()
    # images x methods x seeds x stages x metrics x normalizations x signed/abs
    assert len(randomization) == IMAGES * 3 * 2 * 2 * 3 * 2 * 2
    assert not randomization.duplicated(["image_id", "method", "seed", "stage", "metric", "normalization", "absolute"]).any()
    assert set(randomization.stage) == {1, 2} and set(randomization.seed) == {0, 1}
    assert randomization[randomization.stage == 1].layers.map(list).eq([["fc"]] * (len(randomization) // 2)).all()
    assert (randomization.model == "resnet34").all() and (randomization.dataset == "synthetic").all()
    ssim = randomization[randomization.metric == "ssim"]
    assert ssim.value.between(-1, 1).all() and ssim.bound.notna().all()
    assert randomization[randomization.metric == "spearman"].bound.isna().all()
    occlusion = read_table(store, "occlusion").to_pandas()
    assert len(occlusion) == IMAGES * 3 and occlusion.curve.map(len).eq(7).all()
    # summaries are the formulas of DESIGN §6 applied to the stored curves
    curves = np.stack(occlusion.curve.to_numpy())
    assert np.allclose(occlusion.auc, curves.mean(axis=1), atol=1e-6)
    assert np.allclose(occlusion.aopc, (curves[:, :1] - curves).mean(axis=1), atol=1e-6)
    shards = read_table(store, "shards").to_pandas()
    assert sorted(shards.shard) == [0, 1, 2] and shards.images.sum() == IMAGES


def test_partition_layout_and_manifest(finished_run) -> None:
    _, out = finished_run
    parts = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.parquet"))
    assert "randomization/model=resnet34/dataset=synthetic/part-0.parquet" in parts
    assert "randomization/model=resnet34/dataset=synthetic/part-2.parquet" in parts
    assert "model" not in pq.read_schema(out / "randomization/model=resnet34/dataset=synthetic/part-0.parquet").names
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["spec"]["name"] == "tiny" and len(manifest["spec_hash"]) == 16
    assert [s["shard"] for s in manifest["shard_plan"]["shards"]] == [0, 1, 2]
    assert manifest["randomization_plan"]["stages"][0]["modules"] == ["fc"]
    assert manifest["versions"]["torch"] == torch.__version__.split("+")[0] or manifest["versions"]["torch"].startswith(torch.__version__.split("+")[0])
    assert manifest["weights"].startswith("random")


def test_rerun_is_a_no_op_and_a_lost_shard_is_recomputed_identically(finished_run, capsys) -> None:
    job, out = finished_run
    before = {t: sorted_rows(out, t) for t in ("randomization", "occlusion")}
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    assert "0 to run" in capsys.readouterr().err
    (out / "_commits/shard-1.json").unlink()  # as if the worker died before committing shard 1
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    assert "1 to run" in capsys.readouterr().err
    for table, frame in before.items():
        after = sorted_rows(out, table)
        assert after.drop(columns=["curve", "logit_curve", "layers"], errors="ignore").equals(
            frame.drop(columns=["curve", "logit_curve", "layers"], errors="ignore")
        )


def test_changed_spec_is_refused_unless_new_run(finished_run, tmp_path, capsys) -> None:
    job, out = finished_run
    changed = write_job(tmp_path, {**TINY, "randomization": {"seeds": [5], "max_boundaries": 1}})
    assert main(["run", str(changed), "--executor", "inline", "--out", str(out), "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert "randomization.seeds: [0, 1] -> [5]" in message and "--new-run" in message
    assert len(committed_shards(OutputStore(str(out)))) == SHARDS  # nothing was touched


def test_new_run_discards_the_old_results(tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(write_job(tmp_path)), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    small = {**TINY, "dataset": {**TINY["dataset"], "synthetic_images": 2}, "occlusion": {"enabled": False}}
    assert main(["run", str(write_job(tmp_path, small, "b.yaml")), "--executor", "inline", "--out", str(out),
                 "--no-progress", "--new-run"]) == 0
    store = OutputStore(str(out))
    assert list(committed_shards(store)) == [0]
    assert read_table(store, "occlusion").num_rows == 0


def test_status_reports_done_missing_and_failed(finished_run, capsys) -> None:
    _, out = finished_run
    assert main(["status", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == [0, 1, 2] and report["missing"] == [] and report["failed"] == []
    assert report["images_done"] == IMAGES


def test_status_needs_neither_torch_nor_pandas_and_exits_cleanly(finished_run) -> None:
    """`benchmark status` reads the manifest, the markers and two small tables: it imports neither
    torch nor pandas (seconds of imports), and the process ends with status 0, nothing on stderr."""
    import subprocess
    import sys

    _, out = finished_run
    probe = ("import sys; from benchmark.cli.main import main; code = main(['status', sys.argv[1]]); "
             "print('heavy:', sorted(m for m in ('torch', 'pandas', 'ray', 'duckdb') if m in sys.modules)); "
             "sys.exit(code)")
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", probe, str(out)], capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0 and "heavy: []" in done.stdout and "shards    3/3 done" in done.stdout, done.stderr
    for _ in range(3):  # the program itself: an abort at exit would show as status 134 and a message on stderr
        done = subprocess.run([sys.executable, "-m", "benchmark", "status", str(out)], capture_output=True, text=True,
                              timeout=120, cwd=root)
        assert done.returncode == 0 and done.stderr == "" and "shards    3/3 done" in done.stdout, done.stderr


def test_failing_shard_is_retried_recorded_and_rerun(tmp_path, monkeypatch, capsys) -> None:
    from benchmark.engine import shard as shard_module

    original = shard_module.ShardRunner.run
    calls = []

    def flaky(self, task, attempt=1):
        calls.append((task.shard, attempt))
        if task.shard == 1:
            raise RuntimeError("device fell over")
        return original(self, task, attempt)

    monkeypatch.setattr(shard_module.ShardRunner, "run", flaky)
    job, out = write_job(tmp_path), tmp_path / "out"
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 1
    assert "shard 1: RuntimeError: device fell over" in capsys.readouterr().err
    assert calls.count((1, 1)) == 1 and calls.count((1, 3)) == 1  # three attempts, then recorded
    errors = read_table(OutputStore(str(out)), "errors").to_pandas()
    assert errors[["where", "shard"]].values.tolist() == [["shard", 1]]
    assert main(["status", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["failed"] == [1]

    monkeypatch.setattr(shard_module.ShardRunner, "run", original)  # the cause is fixed: rerun
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    assert sorted(committed_shards(store)) == [0, 1, 2] and read_table(store, "errors").num_rows == 0


def test_offline_pretrained_weights_stop_before_any_work(tmp_path, monkeypatch, capsys) -> None:
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    job = write_job(tmp_path, {**TINY, "model": {"name": "resnet34", "weights": "imagenet"}})
    out = tmp_path / "out"
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress"]) == 2
    message = capsys.readouterr().err
    expected = tmp_path / "torch-home/hub/checkpoints/resnet34-b627a593.pth"
    assert str(expected) in message and "--set model.weights=random" in message
    assert not out.exists()  # no manifest, no tables


def test_local_weights_file_is_used(tmp_path) -> None:
    from benchmark.config import validate_job
    from benchmark.models import build_module

    spec = validate_job(TINY)
    module, _ = build_module(spec)
    torch.nn.init.constant_(module.fc.bias, 0.5)
    torch.save({"model_state_dict": module.state_dict()}, tmp_path / "ckpt.pt")
    loaded, source = build_module(validate_job({**TINY, "model": {"name": "resnet34", "weights": str(tmp_path / "ckpt.pt")}}))
    assert source == str(tmp_path / "ckpt.pt") and torch.equal(loaded.fc.bias, module.fc.bias)
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "bad.pt")
    from benchmark.models import WeightsUnavailable

    with pytest.raises(WeightsUnavailable, match="fc.weight has shape"):
        build_module(validate_job({**TINY, "model": {"name": "resnet34", "weights": str(tmp_path / "bad.pt")}}))


@pytest.mark.parametrize(
    "option, tolerance",
    [
        ("channels_last", 1e-4),  # the memory layout: the same sums in another order
        ("reuse_bottom_forward", 0.0),  # the recorded trained bottom: the same computation, not recomputed
    ],
)
def test_speed_options_give_the_same_tables(tmp_path, option: str, tolerance: float) -> None:
    """runtime.channels_last and runtime.reuse_bottom_forward (both on by default) change the cost only."""
    methods = [{"name": "gradient_x_input"}, {"name": "guided_backprop"}, {"name": "integrated_gradients", "steps": 4},
               {"name": "lrp", "composite": "epsilon_plus_flat"}, {"name": "gradient"}]
    outs = {}
    for on in (True, False):
        spec = {**TINY, "methods": methods, "randomization": {"seeds": [0, 1], "max_boundaries": 2},
                "runtime": {**TINY["runtime"], option: on}}
        job = write_job(tmp_path, spec, name=f"{on}.yaml")
        outs[on] = tmp_path / f"out-{on}"
        assert main(["run", str(job), "--executor", "inline", "--out", str(outs[on]), "--no-progress"]) == 0
    for table, column in (("randomization", "value"), ("occlusion", "auc")):
        mine, reference = sorted_rows(outs[True], table), sorted_rows(outs[False], table)
        assert len(mine) == len(reference) > 0
        assert np.allclose(mine[column], reference[column], rtol=0, atol=tolerance, equal_nan=True)
    curves = [np.stack(sorted_rows(outs[on], "occlusion").curve) for on in (True, False)]
    assert np.allclose(*curves, rtol=0, atol=tolerance / 10)


def test_the_run_summary_and_status_warn_of_all_zero_maps(tmp_path: Path, capsys) -> None:
    """An untrained EfficientNet-B0 from efficientnet_pytorch's default initialisation explains nothing:
    every LRP map is exactly zero (gradients are ~1e-14, not zero). The run must say so."""
    spec = {
        "name": "untrained-efficientnet",
        "model": {"name": "efficientnet-b0", "weights": "random"},
        "dataset": {"kind": "synthetic", "synthetic_images": 3, "shard_size": 2, "crop": 32},
        "randomization": {"enabled": False},
        "methods": [{"name": "gradient"}, {"name": "lrp", "composite": "epsilon_plus_flat"}],
        "occlusion": {"kernels": [8], "steps": 2},  # some experiment must ask for the trained model's maps
        "runtime": {"device": "cpu", "batch_size": 2, "num_gpus": 0},
    }
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["run", str(write_job(tmp_path, spec)), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "warning: lrp_epsilon_plus_flat: the trained model's map is all zero for 3 of 3 images" in printed
    assert "warning: gradient" not in printed
    markers = committed_shards(OutputStore(str(out)))
    assert [markers[s]["degenerate_maps"] for s in (0, 1)] == [
        {"lrp_epsilon_plus_flat": {"all_zero": 2}}, {"lrp_epsilon_plus_flat": {"all_zero": 1}}
    ]
    assert main(["status", str(out)]) == 0
    assert "warning   lrp_epsilon_plus_flat: trained-model maps 3 all-zero (images)" in capsys.readouterr().out


def test_degenerate_maps_counts_all_zero_and_non_finite_maps_per_method() -> None:
    from benchmark.experiments.map_health import DegenerateMaps

    counter = DegenerateMaps()
    maps = torch.randn(3, 4, 4)
    broken = maps.clone()
    broken[0] = 0.0
    broken[2, 1, 1] = float("nan")
    counter.add({"a": maps, "b": broken})
    counter.add({"a": torch.zeros(2, 4, 4), "b": maps[:2]})
    assert counter.take() == {"b": {"all_zero": 1, "non_finite": 1}, "a": {"all_zero": 2}}
    assert counter.take() == {}
