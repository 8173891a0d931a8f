"""The Python API: ``benchmark.validate`` and ``benchmark.run`` on paths, dicts and specs, and the
results object's pandas/Arrow views and decoded maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

import benchmark
from benchmark.config import JobSpec, SpecError

ROOT = Path(__file__).resolve().parents[1]
JOB = {
    "name": "api",
    "model": {"name": "resnet34", "weights": "random"},
    "dataset": {"kind": "synthetic", "synthetic_images": 2, "shard_size": 2, "crop": 32},
    "randomization": {"max_boundaries": 1},
    "methods": [{"name": "gradient"}, {"name": "noise"}],
    "metrics": {"normalizations": ["none"], "absolute": [False]},
    "occlusion": {"kernels": [16], "steps": 2},
    "runtime": {"device": "cpu", "batch_size": 2, "save_maps": 1},
}


def test_validate_takes_paths_dicts_and_specs_with_overrides() -> None:
    spec = benchmark.validate(ROOT / "jobs" / "smoke.yaml", ["model.name=torchvision:resnet18", "methods.2.steps=4"])
    assert spec.model.name == "torchvision:resnet18" and spec.methods[2].steps == 4
    spec = benchmark.validate(JOB, {"randomization.seeds": [3, 4], "model.name": "resnet50"})
    assert isinstance(spec, JobSpec) and spec.randomization.seeds == [3, 4] and spec.model.name == "resnet50"
    assert benchmark.validate(spec, {"runtime.batch_size": 1}).runtime.batch_size == 1
    with pytest.raises(SpecError, match=r"model.name: Input should be 'resnet50'"):
        benchmark.validate(JOB, {"model.name": "resnet51"})
    with pytest.raises(SpecError, match="a job is a YAML file's path, a dict or a JobSpec"):
        benchmark.validate(42)  # type: ignore[arg-type]


def test_validate_with_build_refuses_what_a_run_would_refuse() -> None:
    job = {**JOB, "model": {"name": "torchvision.models.vision_transformer:VisionTransformer", "num_classes": 10,
                            "kwargs": {"image_size": 32, "patch_size": 16, "num_layers": 1, "num_heads": 2,
                                       "hidden_dim": 8, "mlp_dim": 16}}}
    assert benchmark.validate({**job, "methods": [{"name": "gradient"}, {"name": "lrp"}]}).methods[1].name == "lrp"
    with pytest.raises(SpecError, match=r"cannot run: LRP \(lrp_epsilon_plus_flat\) is refused .*LayerNorm"):
        benchmark.validate({**job, "methods": [{"name": "gradient"}, {"name": "lrp"}]}, build=True)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "out"
    return benchmark.run(JOB, out=out, executor="inline", progress=False)


def test_run_returns_the_results(results) -> None:
    assert results.complete and results.name == "api"
    frame = results.frame("randomization", method="gradient")
    assert isinstance(frame, pd.DataFrame) and set(frame.stage) == {1, 2}
    by_sql = results.sql_frame("SELECT method, count(*) AS n FROM occlusion GROUP BY method ORDER BY method")
    assert by_sql.to_dict("list") == {"method": ["gradient", "noise"], "n": [2, 2]}
    assert isinstance(results.sql("SELECT 1 AS one"), pa.Table)


def test_maps_are_decoded_with_their_keys(results) -> None:
    image, = results.maps(kind="input")
    assert image.array.shape == (32, 32, 3) and image.kind == "input" and 0 <= image.array.min() <= image.array.max() <= 1
    maps = results.maps(method="gradient")
    assert [(m.stage, m.seed) for m in maps] == [(0, None), (1, 0), (2, 0)]
    assert all(m.array.shape == (32, 32) and m.image_id == image.image_id and m.model == "resnet34" for m in maps)
    # the trained model's map is the gradient of the target logit at the image (both stored as float16)
    from benchmark.data import Preprocess, build_dataset
    from benchmark.data.loader import prefetch_batches
    from benchmark.models import load_model

    spec = benchmark.validate(JOB)
    dataset = build_dataset(spec)
    batch, _ = next(prefetch_batches(dataset, tuple(dataset.index()[:1]), Preprocess.from_spec(spec.dataset), 1))
    assert np.abs(image.array - batch.pixels[0].permute(1, 2, 0).numpy()).max() <= 1e-3
    model = load_model(spec)
    x = model.normalize(batch.pixels).requires_grad_(True)
    (gradient,) = torch.autograd.grad(model.module(x)[0, maps[0].target], x)
    expected = gradient[0].sum(0).numpy()
    assert np.abs(maps[0].array - expected).max() <= 1e-3 * np.abs(expected).max()


def test_a_failed_shard_raises_with_the_results(tmp_path, monkeypatch) -> None:
    from benchmark.engine import shard

    def broken(self, task, attempt=1):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(shard.ShardRunner, "run", broken)
    with pytest.raises(benchmark.RunFailed, match="1 shard\\(s\\) failed: shard 0: .*disk on fire") as error:
        benchmark.run({**JOB, "runtime": {**JOB["runtime"], "max_attempts": 1}}, out=tmp_path / "out",
                      executor="inline", progress=False)
    assert error.value.results.failed and not error.value.results.committed


def test_run_takes_the_outputs_lease_like_the_cli(tmp_path) -> None:
    """One writer per output from a notebook too: an output another driver holds is refused before
    any work, and a finished run leaves the output free."""
    from benchmark.engine.lease import LeaseHeld, OutputLease, read_lease
    from benchmark.results import OutputStore

    out = tmp_path / "out"
    with OutputLease.acquire(OutputStore(str(out)), name="cli-run", spec_hash="0" * 16):
        with pytest.raises(LeaseHeld, match="is being written by another driver: run 'cli-run'"):
            benchmark.run(JOB, out, {"dataset.synthetic_images": 1}, executor="inline", progress=False)
    assert not (out / "manifest.json").exists()  # refused before any work
    results = benchmark.run(JOB, out, {"dataset.synthetic_images": 1}, executor="inline", progress=False)
    assert len(results.frame("randomization")) and read_lease(OutputStore(str(out))) is None
