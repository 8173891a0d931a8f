"""Your own model and method end to end: the smoke job on a torchvision model and on a model class in a
local file, inline and on real Ray actors (the user's code shipped to them), and a custom method in
every table, aggregate and figure."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import matplotlib.text
import pandas as pd
import pytest
import yaml

from benchmark.cli.main import main
from benchmark.results import OutputStore, read_table

from .ray_support import assert_same_results, comparable

ROOT = Path(__file__).resolve().parents[2]
SMOKE = ROOT / "jobs" / "smoke.yaml"
TINY_INPUTS = ["dataset.synthetic_images=2", "dataset.shard_size=1"]  # two one-image shards: two actors
SMOKE_METHODS = [
    "gradient", "gradient_x_input", "integrated_gradients_8", "smoothgrad", "guided_backprop",
    "lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box", "lrp_alpha2beta1", "noise",
]
MODELS = {
    "torchvision": (["model.name=torchvision:resnet18"], "torchvision-resnet18"),
    "local-file": (["model.name={nets}/tiny_net.py:build", "model.kwargs={{width: 8}}", "model.num_classes=10"],
                   "tiny_net-build"),
}

EXPLAIN = '''
import torch


def gradient_x_input(model, inputs, targets):
    x = inputs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad * inputs
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    """The README's model file, in a folder outside the checkout and off sys.path."""
    folder = tmp_path_factory.mktemp("nets")
    shutil.copy(ROOT / "jobs" / "examples" / "tiny_net.py", folder / "tiny_net.py")
    return folder


# the inline and Ray runs compared here are independent runs: 'auto' execution settings are probed per run
PINNED = ["runtime.chunk_size=8", "runtime.channels_last=true", "runtime.fold_batchnorm=false"]


def run_smoke(out: Path, overrides: list[str], executor: str) -> int:
    sets = [item for override in [*PINNED, *overrides] for item in ("--set", override)]
    return main(["run", str(SMOKE), "--executor", executor, "--out", str(out), "--no-progress", *sets])


def model_overrides(kind: str, nets: Path) -> tuple[list[str], str]:
    overrides, model_id = MODELS[kind]
    return [o.format(nets=nets) for o in overrides] + TINY_INPUTS, model_id


@pytest.fixture(scope="module")
def inline_runs(nets, tmp_path_factory) -> dict[str, Path]:
    runs = {}
    for kind in MODELS:
        out = tmp_path_factory.mktemp(kind) / "out"
        overrides, _ = model_overrides(kind, nets)
        assert run_smoke(out, overrides, "inline") == 0
        runs[kind] = out
    return runs


@pytest.mark.parametrize("kind", list(MODELS))
def test_smoke_job_runs_inline(kind, inline_runs, nets) -> None:
    out = inline_runs[kind]
    _, model_id = model_overrides(kind, nets)
    store = OutputStore(str(out))
    randomization = read_table(store, "randomization").to_pandas()
    occlusion = read_table(store, "occlusion").to_pandas()
    assert sorted(set(randomization.method)) == sorted(SMOKE_METHODS) == sorted(set(occlusion.method))
    assert set(randomization.model) == {model_id} and randomization.image_id.nunique() == 2
    assert set(randomization.stage) == {1, 2, 3} and randomization.value.notna().all()
    assert (out / "randomization" / f"model={model_id}" / "dataset=synthetic").is_dir()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["model"]["probes"]["lrp_conservation"]["passed"]  # LRP was allowed by the probe
    assert manifest["model"]["probes"]["functional_activations"] == {"calls": []}
    rule = manifest["randomization_plan"]["rule"]
    assert rule["from"]["head"] == "generic" and rule["from"]["max_boundaries"] == "job"
    assert manifest["randomization_plan"]["stages"][0]["modules"] == [rule["head"]]


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(address="local", num_cpus=2, include_dashboard=False)  # a cluster of its own, never another's
    yield ray
    ray.shutdown()


@pytest.mark.parametrize("kind", list(MODELS))
def test_smoke_job_on_ray_actors_matches(kind, local_ray, inline_runs, nets, tmp_path) -> None:
    out = tmp_path / "out"
    overrides, _ = model_overrides(kind, nets)
    assert run_smoke(out, overrides, "ray") == 0
    assert_same_results(out, comparable(inline_runs[kind]))
    attempt = json.loads((out / "manifest.json").read_text())["last_attempt"]
    assert attempt["executor"] == "ray" and attempt["actors"] == 2
    if kind == "local-file":  # the actors loaded the shipped copy (runtime_env py_modules), not the original
        (reference, location), = attempt["user_code"].items()
        assert reference == f"{nets}/tiny_net.py:build"
        assert Path(location).name == "tiny_net.py" and Path(location).parent != nets
        assert "runtime_resources" in location


def test_callable_method_from_a_local_package_reaches_the_actors(local_ray, nets, tmp_path, monkeypatch) -> None:
    package = tmp_path / "work" / "mymethods"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "explain.py").write_text(EXPLAIN)
    monkeypatch.chdir(tmp_path / "work")  # `package.module:function` from the working directory, like python -m
    overrides, _ = model_overrides("local-file", nets)
    job = yaml.safe_load(SMOKE.read_text())
    job["methods"] = [{"name": "gradient_x_input"}, {"name": "mymethods.explain:gradient_x_input", "label": "mine"}]
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    sets = [item for override in overrides for item in ("--set", override)]
    out = tmp_path / "out"
    try:
        assert main(["run", str(path), "--executor", "ray", "--out", str(out), "--no-progress", *sets]) == 0
    finally:
        for name in [n for n in __import__("sys").modules if n.startswith("mymethods")]:
            del __import__("sys").modules[name]
    attempt = json.loads((out / "manifest.json").read_text())["last_attempt"]
    assert "runtime_resources" in attempt["user_code"]["mymethods"]  # the package travelled with the actors
    frame = read_table(OutputStore(str(out)), "randomization").to_pandas()
    ours, theirs = (frame[frame.method == m].sort_values(["image_id", "stage", "metric", "normalization", "absolute"])
                    for m in ("gradient_x_input", "mine"))
    pd.testing.assert_series_equal(ours.value.reset_index(drop=True), theirs.value.reset_index(drop=True),
                                   check_exact=False, atol=1e-5)


def test_a_callable_method_is_in_every_table_and_figure(nets, tmp_path) -> None:
    (tmp_path / "explain.py").write_text(EXPLAIN)
    job = yaml.safe_load(SMOKE.read_text())
    job["methods"] = [{"name": "gradient"}, {"name": f"{tmp_path}/explain.py:gradient_x_input"}, {"name": "noise"}]
    job["runtime"]["save_maps"] = 1
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    out = tmp_path / "out"
    assert main(["run", str(path), "--executor", "inline", "--out", str(out), "--no-progress", *[
        "--set", "dataset.synthetic_images=3", "--set", "dataset.shard_size=3"]]) == 0
    assert main(["plot", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    for table in ("randomization", "occlusion", "maps"):
        assert "gradient_x_input" in set(read_table(store, table).column("method").to_pylist()), table
    from benchmark.results.aggregate import load_aggregates
    from benchmark.results.plots import paper_figures
    from benchmark.results.query import open_results

    results = open_results(str(out))
    aggregates, _ = load_aggregates(results)
    for name in ("randomization_stats", "occlusion_curves", "occlusion_scores", "rankings"):
        assert "gradient_x_input" in set(aggregates[name].column("method").to_pylist()), name
    ranked = aggregates["rankings"].to_pandas()
    assert ranked[ranked.method == "gradient_x_input"]["rank"].notna().all()
    figures = list(paper_figures(results, aggregates))
    kinds = {figure.name.split("_")[1] for figure in figures}
    assert {"occlusion", "randomization", "maps"} <= kinds
    for figure in figures:
        texts = {t.get_text() for t in figure.figure.findobj(matplotlib.text.Text)}
        assert "gradient_x_input" in texts and "gradient" in texts, figure.name
    written = {p.name for p in (out / "figures").iterdir()}  # what `benchmark plot` wrote: the same figures
    assert {f"{figure.name}.png" for figure in figures} <= written


def test_submit_sends_code_of_the_checkout_and_refuses_code_outside(nets, monkeypatch) -> None:
    from benchmark.config import validate_job
    from benchmark.engine.submit import SPEC_VARIABLE, SubmitError, build_submission

    job = yaml.safe_load(SMOKE.read_text())
    monkeypatch.chdir(ROOT / "jobs")  # a path relative to here is renamed relative to the working_dir (the checkout)
    spec = validate_job({**job, "model": {"name": "examples/tiny_net.py:build", "num_classes": 10},
                         "methods": [{"name": "examples/explain.py:input_x_gradient"}]})
    shipped = json.loads(build_submission(spec, "/shared/run", 1).runtime_env["env_vars"][SPEC_VARIABLE])
    assert shipped["model"]["name"] == "jobs/examples/tiny_net.py:build"
    assert shipped["methods"][0]["name"] == "jobs/examples/explain.py:input_x_gradient"
    assert validate_job(shipped).model.model_id == spec.model.model_id  # the same results, the same ids
    outside = validate_job({**job, "model": {"name": f"{nets}/tiny_net.py:build"}})
    with pytest.raises(SubmitError, match=r"tiny_net.py is outside the submitted working_dir"):
        build_submission(outside, "/shared/run", 1)
