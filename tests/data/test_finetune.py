"""Fine-tuning: average precision against hand-computed values, the spec, and a CPU run whose checkpoint a job uses."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli.finetune import build_spec, register
from benchmark.cli.main import main
from benchmark.config import SpecError, validate_job
from benchmark.finetune import FinetuneSpec, average_precision, mean_average_precision
from benchmark.models import load_model
from benchmark.results import OutputStore, read_table

from ._helpers import run_args, tiny_job

JOBS = Path(__file__).resolve().parents[2] / "jobs"


def test_average_precision_hand_computed() -> None:
    # ranked: 0.8 (+), 0.4 (-), 0.35 (+), 0.1 (-): P@1 = 1, P@3 = 2/3 -> AP = (1 + 2/3) / 2
    assert average_precision(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(5 / 6)
    # a tie is one threshold: at 0.5, P = 1/2 and R = 1/2; at 0.2, P = 2/3 and R = 1 -> 1/4 + 1/3
    assert average_precision(np.array([0.5, 0.5, 0.2]), np.array([1, 0, 1])) == pytest.approx(7 / 12)
    assert average_precision(np.array([0.9, 0.1]), np.array([1, 0])) == 1.0
    assert np.isnan(average_precision(np.array([0.3, 0.2]), np.array([0, 0])))


def test_average_precision_equals_mean_precision_at_the_positives_without_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        scores, labels = rng.permutation(50) / 50.0, rng.integers(0, 2, 50)
        labels[0] = 1
        ranked = labels[np.argsort(-scores)]
        precision_at = np.cumsum(ranked) / np.arange(1, 51)
        assert average_precision(scores, labels) == pytest.approx(precision_at[ranked == 1].mean())


def test_map_averages_the_classes_that_have_positives() -> None:
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.4], [0.1, 0.3, 0.6]])
    targets = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0]])
    # class 0: AP 1; class 1: positive ranked 2nd -> 1/2; class 2 has no positive and is left out
    assert mean_average_precision(scores, targets) == pytest.approx(0.75)


def test_spec_defaults_are_the_supplements_recipe() -> None:
    spec = FinetuneSpec.model_validate({"model": {"name": "resnet50"}, "dataset": {"kind": "coco", "root": "/c"}})
    assert (spec.model.weights, spec.lr, spec.batch_size, spec.epochs, spec.hflip) == ("imagenet", 1e-4, 64, 20, True)
    assert (spec.dataset.crop, spec.dataset.resize or spec.dataset.crop, spec.dataset.box_fraction) == (224, 224, 0.4)
    assert spec.num_classes() == 80 and spec.train_dataset().split == "train" and spec.dataset.split == "val"


@pytest.mark.parametrize("name", ["coco.yaml", "voc.yaml"])
def test_shipped_finetune_specs_validate(name: str) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    spec = build_spec(parser.parse_args(["finetune", str(JOBS / "finetune" / name), "--root", "/data/x", "--epochs", "3"]))
    assert spec.dataset.root == "/data/x" and spec.epochs == 3 and spec.model.name == "resnet50"
    assert spec.num_classes() == (80 if name == "coco.yaml" else 20)


def test_bad_finetune_specs_name_the_key() -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    with pytest.raises(SpecError, match=r"dataset: dataset.kind must be 'coco' or 'voc' for fine-tuning"):
        build_spec(parser.parse_args(["finetune", "--dataset", "coco", "--model", "resnet50", "--root", "r",
                                      "--set", "dataset.kind=imagenet"]))
    with pytest.raises(SpecError, match=r"epoch: unknown key; allowed keys: .*epochs"):
        build_spec(parser.parse_args(["finetune", "--dataset", "voc", "--model", "resnet50", "--root", "r",
                                      "--set", "epoch=3"]))


@pytest.fixture
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_finetune_one_epoch_then_evaluate_with_the_checkpoint(
    local_ray, fixture_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from benchmark.finetune.train import run_finetune

    spec = FinetuneSpec.model_validate({
        "model": {"name": "resnet34", "weights": "random"},
        "dataset": {"kind": "coco", "root": str(fixture_root / "coco"), "crop": 32},
        "epochs": 1, "batch_size": 4, "loader_workers": 0, "output": str(tmp_path / "ft"),
    })
    result = run_finetune(spec)
    assert result.checkpoint == tmp_path / "ft" / "best.pt" and result.best_epoch == 1
    assert [entry["epoch"] for entry in result.history] == [1] and result.history[0]["train_images"] == 8
    assert result.history[0]["val_images"] == 6  # 8 val images, 2 unreadable
    assert {e["image_id"] for e in result.errors} == {"776", "785"}
    assert 0.0 <= result.best_map <= 1.0

    payload = torch.load(result.checkpoint, weights_only=True)
    assert payload["num_classes"] == 80 and payload["architecture"] == "resnet34" and payload["epoch"] == 1
    job_spec = validate_job({"name": "t", "model": {"name": "resnet34", "weights": str(result.checkpoint)},
                             "dataset": {"kind": "coco", "root": str(fixture_root / "coco"), "crop": 32},
                             "methods": [{"name": "gradient"}]})
    loaded = load_model(job_spec).module.cpu()
    for key, value in payload["model_state_dict"].items():
        assert torch.equal(loaded.state_dict()[key], value), key

    out = tmp_path / "eval"
    code = main(run_args(tiny_job(tmp_path), out, dataset__kind="coco", dataset__root=fixture_root / "coco",
                         model__weights=result.checkpoint, model__num_classes=80))
    assert code == 0, capsys.readouterr().err
    store = OutputStore(str(out))
    assert set(read_table(store, "occlusion").column("image_id").to_pylist()) == {"139", "285", "632", "724", "802", "872"}
    assert read_table(store, "randomization").num_rows > 0


@pytest.mark.parametrize(
    ("dataset_root", "weights", "error"),
    [
        ("malformed/coco_unknown_category", "random", "annotations[1].category_id"),
        ("coco", "/nonexistent/best.pt", "model.weights: file /nonexistent/best.pt does not exist"),
    ],
)
def test_finetune_fails_before_starting_ray(fixture_root: Path, tmp_path: Path, dataset_root: str, weights: str, error: str) -> None:
    import ray

    from benchmark.data import AnnotationError
    from benchmark.finetune.train import run_finetune
    from benchmark.models import WeightsUnavailable

    spec = FinetuneSpec.model_validate({
        "model": {"name": "resnet34", "weights": weights},
        "dataset": {"kind": "coco", "root": str(fixture_root / dataset_root), "crop": 32},
        "train_split": "val",  # the malformed folder has no training split
        "output": str(tmp_path / "ft"),
    })
    with pytest.raises((AnnotationError, WeightsUnavailable), match=re.escape(error)):
        run_finetune(spec)
    assert not ray.is_initialized() and not (tmp_path / "ft").exists()
