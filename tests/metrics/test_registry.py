"""A metric is one registered object: registering a toy metric is all it takes for it to be validated
in jobs, computed into the randomization table, aggregated and ranked in its own direction."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pytest
import torch

from benchmark.cli.main import main
from benchmark.config import SpecError, validate_job
from benchmark.metrics import METRICS, SCORES, Metric, metric, mse, register_metric, unregister_metric
from benchmark.results import OutputStore, read_table
from benchmark.results.aggregate import compute_aggregates
from benchmark.results.query import open_results
from benchmark.results.statistics import BootstrapSettings, rank

from ..engine.jobs import TINY, write_job


@dataclass(frozen=True)
class NegativeMSE(Metric):
    """The MSE with its sign flipped: a similarity, so a method passes the check with a *low* value."""

    def compare(self, reference: torch.Tensor, prepared: object, maps: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -mse(reference, maps), None


@pytest.fixture
def toy_metric():
    registered = register_metric(NegativeMSE("negative_mse", "negative MSE", better="lower"))
    yield registered
    unregister_metric("negative_mse")


JOB = {
    **TINY,
    "dataset": {**TINY["dataset"], "synthetic_images": 3, "shard_size": 3},
    "methods": [{"name": "gradient"}, {"name": "gradient_x_input"}, {"name": "noise"}],
    "randomization": {"seeds": [0], "max_boundaries": 1},
    "metrics": {"similarities": ["mse", "negative_mse"], "normalizations": ["second_moment"], "absolute": [False]},
    "occlusion": {"kernels": [16], "steps": 2},
}


def test_the_paper_metrics_are_registered_with_their_directions() -> None:
    assert list(METRICS) == ["ssim", "mse", "spearman"]
    assert [(m.better, m.bound is not None) for m in METRICS.values()] == [("lower", True), ("higher", True), ("lower", False)]
    assert (SCORES["auc"].better, SCORES["aopc"].better) == ("lower", "higher")
    with pytest.raises(ValueError, match="unknown similarity 'cosine'; registered: ssim, mse, spearman"):
        metric("cosine")
    with pytest.raises(ValueError, match="better must be one of"):
        NegativeMSE("x", "x", better="smaller")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="better must be 'lower' or 'higher'"):
        rank([1.0, 2.0], "sideways")


def test_jobs_accept_exactly_the_registered_metrics(toy_metric) -> None:
    assert validate_job(JOB).metrics.similarities == ["mse", "negative_mse"]
    with pytest.raises(SpecError, match="metrics.similarities: unknown similarity 'cosine'; allowed: ssim, mse, spearman, negative_mse"):
        validate_job({**JOB, "metrics": {"similarities": ["cosine"]}})
    # not among the defaults: a job that names no similarities gets the paper's
    assert validate_job({**JOB, "metrics": {}}).metrics.similarities == ["ssim", "mse", "spearman"]
    unregister_metric("negative_mse")
    with pytest.raises(SpecError, match="unknown similarity 'negative_mse'"):
        validate_job(JOB)


def test_a_registered_metric_is_computed_aggregated_and_ranked_in_its_direction(toy_metric, tmp_path) -> None:
    out = tmp_path / "out"
    assert main(["run", str(write_job(tmp_path, JOB)), "--executor", "inline", "--out", str(out), "--no-progress"]) == 0
    rows = read_table(OutputStore(str(out)), "randomization").to_pandas()
    keys = ["image_id", "method", "seed", "stage"]
    pairs = rows[rows.metric == "mse"].merge(rows[rows.metric == "negative_mse"], on=keys, suffixes=("", "_toy"))
    assert len(pairs) == 3 * 3 * 2 and (pairs.value_toy == -pairs.value).all()  # computed on the same maps
    assert pairs.bound_toy.isna().all() and pairs.bound.notna().all()  # no noise bound declared: null

    aggregates = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=50))
    stats = aggregates["randomization_stats"].to_pandas()
    by_metric = stats.set_index(["method", "stage", "metric"])["mean"].unstack("metric")
    pd.testing.assert_series_equal(by_metric["negative_mse"], -by_metric["mse"], check_names=False)
    rankings = aggregates["rankings"].to_pandas()
    toy = rankings[rankings.metric == "negative_mse"]
    assert set(toy.better) == {"lower"} and set(rankings[rankings.metric == "mse"].better) == {"higher"}
    # the same order of methods: the lowest negative MSE is the highest MSE; a default "higher is better"
    # would have ranked the toy metric the other way round
    ranks = rankings[rankings.check == "randomization"].pivot_table(
        index=["stage", "method"], columns="metric", values="rank", dropna=False
    )
    assert ranks["negative_mse"].equals(ranks["mse"]) and ranks["mse"].nunique() > 1
    assert "negative_mse" in set(aggregates["rank_agreement"].to_pandas().metric)

    # a process that does not know the metric's direction does not guess it
    unregister_metric("negative_mse")
    with pytest.warns(UserWarning, match="no direction known for negative_mse"):
        unknown = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=50))
    assert "negative_mse" not in set(unknown["rankings"].to_pandas().metric)
    assert "negative_mse" in set(unknown["randomization_stats"].to_pandas().metric)
