"""Every job of ``jobs/paper/`` runs end to end through the inline executor on tiny inputs (the
fixture dataset of the job's kind, 32 px, random weights; the same code path as a real run, only
sizes and counts shrink), and ``benchmark plot`` then draws the figures its row of
``jobs/paper/README.md`` names, each holding the series it should (read from the data the plot
function drew, ``PaperFigure.data``)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml

from benchmark.cli.main import main
from benchmark.config import validate_job
from benchmark.data.fixtures import write_fixtures
from benchmark.results import OutputStore, read_table

JOBS = Path(__file__).resolve().parents[2] / "jobs" / "paper"
PAPER_JOBS = sorted(JOBS.glob("**/*.yaml"))
FIXTURE_ROOTS = {"imagenet": "imagenet", "coco": "coco", "voc": "voc/VOC2012"}


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fixtures")
    write_fixtures(root)
    return root


def tiny(raw: dict, fixtures: Path) -> dict:
    """The job at CI size: two readable images of the fixture dataset of the job's kind at 32 px,
    random weights, few stages, steps and seeds. A job on images beyond the first keeps an offset.

    These runs check that every job's code path runs and writes its tables and figures, not any
    number: with random weights EfficientNet-B0 (supp_fig09) has gradients of ~1e-14 and all-zero
    LRP maps, which the run summary warns about (numbers on a trained network: tests/testbed)."""
    job = copy.deepcopy(raw)
    job["model"]["weights"] = "random"
    dataset = job["dataset"]
    kind = dataset["kind"]
    small = {"kind": kind, "offset": 1 if dataset.get("offset") else 0, "limit": 2, "shard_size": 2,
             "resize": 36, "crop": 32}
    if kind in FIXTURE_ROOTS:
        small["root"] = str(fixtures / FIXTURE_ROOTS[kind])
    job["dataset"] = small if kind in FIXTURE_ROOTS or kind == "samples" else {
        "kind": "synthetic", "synthetic_images": 2, "shard_size": 2, "crop": 32}
    randomization = job.setdefault("randomization", {})
    randomization["seeds"] = randomization.get("seeds", [0])[:2]
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
        job.setdefault("occlusion", {})["steps"] = 3
    save_maps = job.get("runtime", {}).get("save_maps", 0)
    job["runtime"] = {"device": "cpu", "batch_size": 2, "num_gpus": 0, "save_maps": min(save_maps, 2)}
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
    ) or spec.runtime.save_maps:
        tables.add("maps")
    return tables


def readme_figures() -> dict[str, list[str]]:
    """Job file -> the figure files its row of jobs/paper/README.md names."""
    rows = {}
    for line in (JOBS / "README.md").read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) >= 3 and re.fullmatch(r"`[\w]+\.yaml`", cells[0]):
            rows[cells[0].strip("`")] = re.findall(r"`([^`]+)`", cells[2])
    return rows


def test_there_is_a_job_for_every_figure() -> None:
    names = {"_".join(path.stem.split("_")[: 2 if path.stem.startswith("supp") else 1]) for path in PAPER_JOBS}
    assert {"fig1", "fig2", "fig4", "fig5", "fig7"} <= names  # Fig. 3 and 6 are diagrams
    assert {f"supp_fig{k:02d}" for k in (1, 3, 4, 5, 6, 7, 8, 9, 10)} | {"supp_fig02a", "supp_fig02b"} <= names
    assert set(readme_figures()) == {path.name for path in PAPER_JOBS}  # every job has its README row
    assert all(readme_figures().values())


# what each figure must have drawn, by the name's start: (series recorded in PaperFigure.data, check)
SERIES = {
    "paper-fig1_occlusion": ("curves", lambda d: {"method", "step", "mean", "ci_low", "ci_high"} <= set(d)),
    "supp-fig1_occlusion": ("curves", lambda d: len(d) > 0),
    "supp-fig2": ("curves", lambda d: len(d) > 0),
    "supp-fig3": ("curves", lambda d: len(d) > 0),
    "paper-fig2": ("points", lambda d: {"method", "stage", "label", "mean", "ci_low", "ci_high"} <= set(d)),
    "supp-fig5": ("points", lambda d: len(d) > 0),
    "supp-fig6": ("points", lambda d: len(d) > 0),
    "paper-fig4_kept-maps": ("cells", lambda d: {"kept", "output"} <= set(d.component) and d.image_id.nunique() == 2),
    "paper-fig4_kept-similarity": ("points", lambda d: set(d.stage) >= {0} and len(set(d.stage)) == 2),
    "paper-fig5_logit-correlation": ("points", lambda d: set(d.metric) == {"pearson", "spearman"}
                                     and d.stage.nunique() == 2 and d["count"].min() == 2),
    "paper-fig5_logits": ("scatter", lambda d: len(d) > 0),
    "paper-fig7_skip-path": ("share", lambda d: set(d.component) == {"skip", "residual"} and set(d.stage) == {0, 1}),
    "paper-fig7_maps": ("cells", lambda d: {"skip", "residual", "total"} <= set(d.component)),
    "supp-fig7": ("probabilities", lambda d: len(d) > 0 and d.layer.nunique() > 1),
    "supp-fig8": ("probabilities", lambda d: len(d) > 0 and d.layer.nunique() > 1),
    "supp-fig9": ("probabilities", lambda d: len(d) > 0 and d.layer.nunique() > 1),
    "randomization_": ("points", lambda d: {"method", "stage", "label", "mean", "ci_low", "ci_high"} <= set(d)),
    "supp-fig10": ("points", lambda d: len(d) > 1 and d["mean"].between(0, 1).all()),
}


@pytest.mark.parametrize("path", PAPER_JOBS, ids=lambda p: p.stem)
def test_paper_job_runs_on_tiny_inputs_and_draws_its_figures(path: Path, fixtures: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert path.read_text().lstrip().startswith("#"), "every paper job starts with a comment citing its section"
    job = tiny(raw, fixtures)
    job_file = tmp_path / path.name
    job_file.write_text(yaml.safe_dump(job))
    out = tmp_path / "out"
    assert main(["run", str(job_file), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    store = OutputStore(str(out))
    for table in expected_tables(job):
        assert read_table(store, table).num_rows > 0, f"{path.name}: no rows in '{table}'"
    assert not list(out.glob("errors/**/*.parquet")), f"{path.name}: errors were recorded"

    from benchmark.results.aggregate import load_aggregates
    from benchmark.results.plots import PlotOptions, plot_all
    from benchmark.results.query import open_results
    from benchmark.results.statistics import BootstrapSettings

    results = open_results(str(out))
    aggregates, _ = load_aggregates(results, BootstrapSettings(resamples=50))
    figures = {figure.name: figure for figure in plot_all(results, aggregates, PlotOptions(formats=("png",)))}
    dataset = job["dataset"]["kind"]
    for wanted in readme_figures()[path.name]:
        name = wanted.replace("<dataset>", dataset)
        assert name in figures, f"{path.name}: no figure {name} (drawn: {sorted(figures)})"
        png = out / "figures" / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 2000 and png.read_bytes().startswith(b"\x89PNG")
        series, check = next(value for prefix, value in SERIES.items() if name.startswith(prefix))
        drawn = figures[name].data[series]
        assert check(drawn), f"{name}: unexpected '{series}' series:\n{drawn}"
