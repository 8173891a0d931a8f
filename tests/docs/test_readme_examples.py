"""The README's examples of your own model and method are files of jobs/examples/, shown verbatim,
and each one runs (on tiny inputs) exactly as the README tells."""

from __future__ import annotations

import re
import runpy
import shutil
from pathlib import Path

import pytest

from benchmark.cli.main import main
from benchmark.results import OutputStore, read_table

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
SHOWN = re.findall(r"<!-- example: (\S+) -->\n```\w+\n(.*?)\n```", README, flags=re.S)
JOBS = {
    "jobs/examples/torchvision_resnet18.yaml": {"gradient", "guided_backprop", "lrp_epsilon_plus_flat"},
    "jobs/examples/local_model.yaml": {"gradient", "integrated_gradients_8", "lrp_epsilon", "input_x_gradient"},
    "jobs/examples/captum_method.yaml": {"gradient", "captum:Saliency", "captum:IntegratedGradients", "gradcam"},
}


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A working directory with the examples where the README has them (paths are relative to it)."""
    shutil.copytree(ROOT / "jobs" / "examples", tmp_path / "jobs" / "examples")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_readme_shows_the_example_files_verbatim() -> None:
    shown = dict(SHOWN)
    assert set(shown) == set(JOBS) | {"jobs/examples/tiny_net.py", "jobs/examples/explain.py", "jobs/examples/notebook.py"}
    for path, text in shown.items():
        assert (ROOT / path).read_text().rstrip("\n") == text, path
    for job in JOBS:
        assert f"benchmark run {job}" in README


@pytest.mark.parametrize("job", sorted(JOBS))
def test_each_example_job_runs(job, checkout) -> None:
    out = checkout / "runs" / Path(job).stem
    assert main(["run", job, "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    frame = read_table(OutputStore(str(out)), "randomization").to_pandas()
    assert set(frame.method) == JOBS[job]
    if "captum:Saliency" in JOBS[job]:  # Captum's Saliency(abs=False) is our gradient, through the whole pipeline
        keys = ["image_id", "stage", "metric", "normalization", "absolute"]
        ours, captum = (frame[frame.method == m].sort_values(keys).value.to_numpy() for m in ("gradient", "captum:Saliency"))
        assert len(ours) and abs(ours - captum).max() < 1e-5


def test_the_notebook_example_runs(checkout, capsys) -> None:
    runpy.run_path(str(checkout / "jobs" / "examples" / "notebook.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "gradcam" in printed and "captum:Saliency" in printed
    assert (checkout / "runs" / "example-notebook" / "gradcam.png").stat().st_size > 1000


def test_import_benchmark_is_light() -> None:
    import subprocess
    import sys

    code = "import sys, benchmark; print(sorted(m for m in ('torch', 'ray', 'duckdb', 'pandas') if m in sys.modules))"
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env={"PYTHONPATH": str(ROOT)}).stdout
    assert output.strip() == "[]"
