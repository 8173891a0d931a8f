"""`benchmark aggregate`: every number against an independent reference (pandas groupby for
means, numpy index resampling for CIs, scipy for tau), rankings on hand-made outputs whose
answer is known, the written files against their schemas, and the messages for outputs
that cannot be aggregated."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from benchmark.cli.main import main
from benchmark.engine.shard import shard_failure_rows
from benchmark.results import OutputStore, ShardWriter, aggregate_schema, read_table
from benchmark.results.aggregate import compute_aggregates, load_aggregates
from benchmark.results.query import ResultsError, open_results
from benchmark.results.statistics import BootstrapSettings

from .conftest import IMAGES, METHODS
from .fakes import activation_rows, fake_output, logit_rows, occlusion_rows, randomization_rows, write_manifest

GROUP = ["model", "dataset", "method", "reduction", "mode", "stage", "metric", "normalization", "absolute"]


def aggregate_frame(out, name: str) -> pd.DataFrame:
    return pq.read_table(out / "aggregates" / f"{name}.parquet").to_pandas()


def test_randomization_stats_equal_pandas_over_seed_averaged_images(aggregated_run) -> None:
    rows = read_table(OutputStore(str(aggregated_run)), "randomization").to_pandas()
    per_image = rows.groupby(GROUP + ["image_id"]).agg(value=("value", "mean"), bound=("bound", "mean")).reset_index()
    expected = per_image.groupby(GROUP).agg(mean=("value", "mean"), std=("value", "std"), count=("value", "count"),
                                            bound_mean=("bound", "mean")).reset_index()
    stats_ = aggregate_frame(aggregated_run, "randomization_stats").sort_values(GROUP).reset_index(drop=True)
    expected = expected.sort_values(GROUP).reset_index(drop=True)
    assert len(stats_) == len(expected) == len(METHODS) * 2 * 3 * 2 * 2
    assert stats_[GROUP].astype(str).equals(expected[GROUP].astype(str))
    assert np.allclose(stats_["mean"], expected["mean"]) and np.allclose(stats_["std"], expected["std"])
    assert (stats_["count"] == IMAGES).all() and (stats_["seeds"] == 2).all() and (stats_["nans"] == 0).all()
    assert np.allclose(stats_["bound_mean"].fillna(-1), expected["bound_mean"].fillna(-1))
    assert stats_[stats_.metric == "spearman"].bound_mean.isna().all()
    assert stats_[stats_.stage == 1].layers.map(list).eq([["fc"]] * (len(stats_) // 2)).all()


def test_ci_equals_numpy_percentile_bootstrap_of_the_images(aggregated_run) -> None:
    """Rebuild one CI with explicit index resampling (resamples=500, seed 0, as aggregated)."""
    rows = read_table(OutputStore(str(aggregated_run)), "randomization").to_pandas()
    stats_ = aggregate_frame(aggregated_run, "randomization_stats")
    for _, row in stats_.sample(4, random_state=1).iterrows():
        cell = rows[(rows[GROUP[2:]] == row[GROUP[2:]]).all(axis=1)]
        values = cell.groupby("image_id").value.mean().sort_index().to_numpy()
        indices = np.random.default_rng([0, len(values)]).integers(0, len(values), size=(500, len(values)))
        low, high = np.percentile(values[indices].mean(axis=1), [2.5, 97.5])
        assert row.ci_low == pytest.approx(low, abs=1e-12) and row.ci_high == pytest.approx(high, abs=1e-12)
        assert row.ci_low <= row["mean"] <= row.ci_high


def test_occlusion_curves_and_scores_equal_numpy(aggregated_run) -> None:
    rows = read_table(OutputStore(str(aggregated_run)), "occlusion").to_pandas()
    curves = aggregate_frame(aggregated_run, "occlusion_curves")
    scores = aggregate_frame(aggregated_run, "occlusion_scores")
    for (method, kernel), group in rows.groupby(["method", "kernel"]):
        stacked = np.stack(group.curve.to_numpy())
        mine = curves[(curves.method == method) & (curves.kernel == kernel)].sort_values("step")
        assert list(mine.step) == list(range(7))
        assert np.allclose(mine["mean"], stacked.mean(axis=0), atol=1e-7)
        assert np.allclose(mine["std"], stacked.std(axis=0, ddof=1), atol=1e-7)
        assert np.allclose(mine.logit_mean, np.stack(group.logit_curve.to_numpy()).mean(axis=0), atol=1e-5)
        assert ((mine.ci_low <= mine["mean"] + 1e-12) & (mine["mean"] <= mine.ci_high + 1e-12)).all()
        for score in ("auc", "aopc"):
            value = scores[(scores.method == method) & (scores.kernel == kernel) & (scores.score == score)]
            assert value["mean"].item() == pytest.approx(group[score].mean()) and value["count"].item() == IMAGES


def test_written_files_match_schemas_and_meta(aggregated_run) -> None:
    meta = json.loads((aggregated_run / "aggregates/_meta.json").read_text())
    assert meta["bootstrap"] == {"resamples": 500, "confidence": 0.95, "seed": 0, "method": "percentile"}
    assert meta["shards"] == [0, 1, 2] and meta["complete"]
    for name, rows in meta["tables"].items():
        table = pq.read_table(aggregated_run / "aggregates" / f"{name}.parquet")
        schema = aggregate_schema(name)
        assert table.schema.names == schema.arrow.names and table.num_rows == rows
        assert all(table.schema.field(f.name).type.equals(f.type) for f in schema.arrow)
        assert len(pd.read_csv(aggregated_run / "aggregates" / f"{name}.csv")) == rows
    assert set(meta["tables"]) == {"randomization_stats", "occlusion_curves", "occlusion_scores", "rankings", "rank_agreement",
                                   "occlusion_relative",  # the job has a noise method: the random tile order
                                   "sign_flip_stats", "agreement"}


def known_ranking_output(folder, nan_images=()):
    """Methods a..d: SSIM a<b<c<d (a passes the check best), MSE the same order, occlusion auc
    d<c<b<a (d most faithful): rankings exactly opposite, tau = -1. Stage 2 swaps c and d."""
    methods = ["a", "b", "c", "d"]
    level = {"a": 0.1, "b": 0.2, "c": 0.3, "d": 0.4}

    def value(method, stage, image, seed, metric, normalization, absolute):
        number = level[method] if not (stage == 2 and method in "cd") else level["d" if method == "c" else "c"]
        if metric == "spearman" and image in nan_images:
            return np.nan
        noise = 0.01 * (int(image[-3:]) % 3) + 0.001 * seed
        return number + noise if metric != "mse" else 2 - number + noise

    def curve(method, kernel, image):
        return np.linspace(level[method], 0, 7) + 0.001 * int(image[-3:])

    def tables(images, shard):
        return {
            "randomization": randomization_rows(images, shard, methods, [1, 2], value, seeds=[0, 1]),
            "occlusion": occlusion_rows(images, shard, methods, [8, 15], lambda method, kernel, image: -curve(method, kernel, image)[::-1] + 1),
        }
    return fake_output(folder, shards=2, per_shard=3, tables=tables)


def test_rankings_and_tau_on_known_rankings(tmp_path) -> None:
    out = known_ranking_output(tmp_path / "out")
    tables = {k: v.to_pandas() for k, v in compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=100)).items()}
    rankings, agreement = tables["rankings"], tables["rank_agreement"]
    faithful = rankings[(rankings.check == "faithfulness") & (rankings.metric == "auc") & (rankings.kernel == 15)]
    auc = tables["occlusion_scores"].query("score == 'auc' and kernel == 15").set_index("method")["mean"]
    assert list(auc.sort_values().index) == ["d", "c", "b", "a"]
    assert dict(zip(faithful.method, faithful["rank"])) == {"d": 1, "c": 2, "b": 3, "a": 4}
    check = rankings[(rankings.check == "randomization") & (rankings.metric == "ssim") & (rankings.stage == 1)]
    assert dict(zip(check.method, check["rank"])) == {"a": 1, "b": 2, "c": 3, "d": 4}
    mse = rankings[(rankings.check == "randomization") & (rankings.metric == "mse") & (rankings.stage == 1)]
    assert dict(zip(mse.method, mse["rank"])) == {"a": 1, "b": 2, "c": 3, "d": 4} and set(mse.better) == {"higher"}
    stage1 = agreement[(agreement.metric == "ssim") & (agreement.stage == 1) & (agreement.kernel == 15)]
    assert stage1.tau.item() == pytest.approx(-1.0) and stage1.methods.item() == 4
    stage2 = agreement[(agreement.metric == "ssim") & (agreement.stage == 2) & (agreement.kernel == 15)]
    reference = stats.kendalltau([1, 2, 4, 3], [4, 3, 2, 1])  # stage 2: c and d swapped in the check
    assert stage2.tau.item() == pytest.approx(reference.statistic) and stage2.p_value.item() == pytest.approx(reference.pvalue)
    headline = agreement[agreement.headline]
    assert len(headline) == 1 and headline.iloc[0][["metric", "normalization", "kernel"]].tolist() == ["ssim", "second_moment", 15]
    assert pd.isna(headline.iloc[0].stage) and not headline.iloc[0].absolute
    overall = rankings[(rankings.check == "randomization") & rankings.stage.isna() & (rankings.metric == "ssim")]
    means = tables["randomization_stats"].query("metric == 'ssim'").groupby("method")["mean"].mean()
    assert np.allclose(overall.set_index("method").score.sort_index(), means.sort_index())


def test_nan_values_are_counted_and_left_out(tmp_path) -> None:
    out = known_ranking_output(tmp_path / "out", nan_images={"img-001", "img-004"})
    stats_ = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=100))["randomization_stats"].to_pandas()
    spearman = stats_[stats_.metric == "spearman"]
    rows = read_table(OutputStore(str(out)), "randomization").to_pandas().query("metric == 'spearman'")
    expected = rows.groupby(["method", "stage", "image_id"]).value.mean().groupby(["method", "stage"]).mean()  # skipna
    assert (spearman["count"] == 4).all() and (spearman["nans"] == 2).all()
    assert np.allclose(spearman.set_index(["method", "stage"])["mean"].sort_index(), expected.sort_index())
    assert spearman[["ci_low", "ci_high", "std"]].notna().all().all()


def test_activation_and_logit_stats_equal_pandas(tmp_path) -> None:
    def tables(images, shard):
        return {
            "activations": activation_rows(images, shard, 4, lambda layer, image: 0.1 * layer + 0.01 * int(image[-3:])),
            "logits": logit_rows(images, shard, [1, 2], seeds=[0, 1]),
        }

    out = fake_output(tmp_path / "out", tables=tables)
    aggregated = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=100))
    assert set(aggregated) == {"activation_stats", "overtaking", "logit_stats"}
    store = OutputStore(str(out))
    activations = read_table(store, "activations").to_pandas()
    mine = aggregated["activation_stats"].to_pandas().set_index("layer_index").sort_index()
    assert np.allclose(mine["mean"], activations.groupby("layer_index").nonpositive.mean())
    means = np.stack(activations.groupby("layer_index").quantiles.apply(lambda q: np.stack(q.to_numpy()).mean(0)))
    assert np.allclose(np.stack(mine.quantiles_mean.to_numpy()), means)
    # supplement I: K from the mean quantiles (inverted where the low quantile is the larger magnitude),
    # gamma = sqrt(q_l / (1 - q_h)), P = 1/2 - arctan(K / gamma) / pi
    overtaking = aggregated["overtaking"].to_pandas()
    assert len(overtaking) == 4 * 3 * 9 and (overtaking.images == 8).all()
    levels = [round(0.95 - 0.05 * i, 2) for i in range(18)]
    for row in overtaking.itertuples():
        high, low = means[row.layer_index][levels.index(round(row.q_high, 2))], means[row.layer_index][levels.index(round(row.q_low, 2))]
        k = max(abs(high), abs(low)) / min(abs(high), abs(low))
        gamma = np.sqrt(row.q_low / (1 - row.q_high))
        assert row.k == pytest.approx(k) and row.gamma == pytest.approx(gamma)
        assert row.probability == pytest.approx(0.5 - np.arctan(k / gamma) / np.pi)
        assert row.inverted == (abs(low) > abs(high))
    logits = read_table(store, "logits").to_pandas()
    expected = logits.groupby(["stage", "image_id"]).pearson.mean().groupby("stage").agg(["mean", "std"])
    mine = aggregated["logit_stats"].to_pandas().query("metric == 'pearson'").set_index("stage").sort_index()
    assert np.allclose(mine["mean"], expected["mean"]) and np.allclose(mine["std"], expected["std"])
    assert (mine.seeds == 2).all() and mine.layers.map(list).tolist() == [["layer1"], ["layer2"]]


def test_sign_flip_stats_equal_pandas(aggregated_run) -> None:
    rows = read_table(OutputStore(str(aggregated_run)), "target_logits").to_pandas()
    assert len(rows) == IMAGES * 2 * 2 and (rows.flipped == (rows.logit * rows.trained_logit < 0)).all()
    per_image = rows.groupby(["stage", "image_id"]).flipped.mean()
    stats_ = aggregate_frame(aggregated_run, "sign_flip_stats").set_index("stage").sort_index()
    assert np.allclose(stats_["mean"], per_image.groupby("stage").mean())
    assert stats_.pairs.tolist() == [IMAGES * 2] * 2 and stats_.seeds.tolist() == [2, 2]
    assert stats_.flipped.tolist() == rows.groupby("stage").flipped.sum().tolist()
    assert stats_.layers.map(list).tolist() == [["fc"], ["layer4.2.conv2", "layer4.2.conv1"]]


def check_score_rows(images: list[str], shard: int) -> pa.Table:
    """Hand-made check_scores rows: sMPRT per seed and stage, eMPRT at the last stage (no normalization),
    random logit without seed or stage; one NaN with its reason."""
    rows = []
    for method, level in (("a", 0.1), ("b", 0.5)):
        for image in images:
            number = int(image[-3:])
            for seed, stage in itertools.product((0, 1), (1, 2)):
                rows.append(dict(check="smprt", score="ssim", normalization="second_moment", seed=seed, mode="top_down",
                                 stage=stage, value=level + 0.01 * number + 0.001 * seed + 0.1 * stage, bound=0.05))
            rows.append(dict(check="emprt", score="entropy_change", normalization=None, seed=0, mode="top_down", stage=2,
                             value=np.nan if (method, number) == ("a", 1) else level - 0.02 * number))
            rows.append(dict(check="random_logit", score="ssim", normalization="second_moment", seed=None, mode=None,
                             stage=None, value=level * 2, compared_class=3))
            for row in rows[-6:]:
                row.update(image_id=image, method=method)
    column = lambda name: [row.get(name) for row in rows]  # noqa: E731
    values = np.array(column("value"), dtype=np.float64)
    return pa.table({
        "image_id": column("image_id"), "method": column("method"), "reduction": ["sum"] * len(rows),
        "check": column("check"), "score": column("score"), "normalization": pa.array(column("normalization"), pa.string()),
        "absolute": [False] * len(rows), "seed": pa.array(column("seed"), pa.int32()),
        "mode": pa.array(column("mode"), pa.string()), "stage": pa.array(column("stage"), pa.int32()),
        "layer": pa.nulls(len(rows), pa.string()), "target": pa.array([1] * len(rows), pa.int32()),
        "compared_class": pa.array(column("compared_class"), pa.int32()), "value": pa.array(values),
        "bound": pa.array(column("bound"), pa.float64()), "coverage": pa.nulls(len(rows), pa.float64()),
        "reason": pa.array(["zero entropy" if np.isnan(v) else None for v in values], pa.string()),
        "shard": pa.array([shard] * len(rows), pa.int32()),
    })


def test_check_stats_equal_pandas_with_null_keys_and_directions(tmp_path) -> None:
    out = fake_output(tmp_path / "out", tables=lambda images, shard: {"check_scores": check_score_rows(images, shard)})
    stats_ = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=100))["check_stats"].to_pandas()
    rows = read_table(OutputStore(str(out)), "check_scores").to_pandas()
    assert len(stats_) == 2 * (2 + 1 + 1)  # per method: sMPRT's two stages, eMPRT, random logit
    smprt = stats_[stats_["check"] == "smprt"].set_index(["method", "stage"]).sort_index()
    expected = (rows[rows["check"] == "smprt"].groupby(["method", "stage", "image_id"]).value.mean()
                .groupby(["method", "stage"]).mean())
    assert np.allclose(smprt["mean"], expected.to_numpy()) and (smprt.seeds == 2).all() and (smprt.better == "lower").all()
    assert np.allclose(smprt.bound_mean, 0.05)
    emprt = stats_[stats_["check"] == "emprt"].set_index("method")
    assert emprt.normalization.isna().all() and (emprt.better == "higher").all() and (emprt.stage == 2).all()
    assert emprt.loc["a", "nans"] == 1 and emprt.loc["a", "count"] == 7 and emprt.loc["b", "nans"] == 0
    logit = stats_[stats_["check"] == "random_logit"].set_index("method")
    assert logit.stage.isna().all() and logit["mode"].isna().all() and (logit.seeds == 0).all()
    assert logit.loc["b", "mean"] == pytest.approx(1.0)


def test_stale_aggregates_are_recomputed(tmp_path) -> None:
    out = known_ranking_output(tmp_path / "out")
    results = open_results(str(out))
    _, computed = load_aggregates(results, BootstrapSettings(resamples=50))
    assert computed
    assert load_aggregates(open_results(str(out)))[1] is False  # current: read back
    (out / "_commits/shard-1.json").unlink()  # the set of committed shards changed
    tables, computed = load_aggregates(open_results(str(out)), BootstrapSettings(resamples=50))
    assert computed and tables["randomization_stats"].to_pandas()["count"].max() == 3


def test_messages_for_outputs_that_cannot_be_aggregated(tmp_path, capsys) -> None:
    assert main(["aggregate", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["aggregate", str(tmp_path)]) == 2
    assert "no manifest.json; this is not the output of a benchmark run" in capsys.readouterr().err

    store = OutputStore(str(tmp_path / "started"))
    write_manifest(store, [0, 1], 3)
    assert main(["aggregate", store.uri]) == 2
    err = capsys.readouterr().err
    assert "0 of 2 shards committed" in err and "nothing to aggregate yet" in err and "benchmark run" in err
    assert "Traceback" not in err

    manifest = store.read_json("manifest.json")
    ShardWriter(store, {"model": "m", "dataset": "d"}).record_failure(0, shard_failure_rows(0, 3, "boom"), {"spec_hash": manifest["spec_hash"]})
    assert main(["aggregate", store.uri]) == 2
    assert "1 shard(s) failed" in capsys.readouterr().err
    with pytest.raises(ResultsError):
        compute_aggregates(open_results(store.uri))


def test_partial_output_is_aggregated_with_a_warning_and_progress(tmp_path, capsys) -> None:
    out = known_ranking_output(tmp_path / "out")
    (out / "_commits/shard-1.json").unlink()
    assert main(["aggregate", str(out), "--resamples", "50"]) == 0
    captured = capsys.readouterr()
    assert "1 of 2 shards committed" in captured.err and "warning: the run is incomplete" in captured.err
    assert "randomization" in captured.err  # the progress bar
    # over all stages c and d tie in the check (they swap at stage 2): tau-b of [1, 2, 3.5, 3.5] vs [4, 3, 2, 1]
    tau = stats.kendalltau([1, 2, 3.5, 3.5], [4, 3, 2, 1]).statistic
    assert f"Kendall's τ = {tau:+.2f}" in captured.out and "the paper's gap" in captured.out


def test_skip_path_and_kept_feature_stats_equal_pandas(tmp_path) -> None:
    from .fakes import kept_features_rows, skip_path_rows

    def tables(images, shard):
        return {"skip_path": skip_path_rows(images, shard), "kept_features": kept_features_rows(images, shard)}

    out = fake_output(tmp_path / "out", tables=tables)
    aggregated = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=100))
    assert {"skip_path_stats", "kept_features_stats"} <= set(aggregated)
    store = OutputStore(str(out))
    rows = read_table(store, "skip_path").to_pandas()
    mine = aggregated["skip_path_stats"].to_pandas()
    for quantity in ("share", "ssim"):
        per_image = rows.groupby(["stage", "component", "image_id"])[quantity].mean()  # seeds first
        expected = per_image.groupby(["stage", "component"]).agg(["mean", "std", "count"]).dropna(subset=["mean"])
        found = mine[mine.quantity == quantity].set_index(["stage", "component"]).sort_index()
        assert np.allclose(found["mean"], expected["mean"]) and np.allclose(found["std"], expected["std"])
        assert (found["count"] == 8).all() and (found.ci_low <= found["mean"]).all() and (found["mean"] <= found.ci_high).all()
    assert set(mine[mine.quantity == "ssim"].stage) == {1}  # the trained model has no similarity to itself
    assert mine.set_index(["stage", "quantity", "component"]).seeds.loc[(1, "share", "skip")] == 2
    assert mine[mine.stage == 1].layers.map(list).iloc[0] == ["layer1"] and mine[mine.stage == 0].layers.map(list).iloc[0] == []
    kept = read_table(store, "kept_features").to_pandas()
    expected = kept.groupby(["stage", "metric", "absolute", "image_id"]).value.mean().groupby(["stage", "metric", "absolute"]).mean()
    found = aggregated["kept_features_stats"].to_pandas().set_index(["stage", "metric", "absolute"]).sort_index()
    assert np.allclose(found["mean"], expected.sort_index())


def test_occlusion_relative_to_the_random_order_is_the_paired_difference(tmp_path) -> None:
    """The noise method ranks tiles in a random order: each image's curve minus that image's noise
    curve, then mean and a paired CI over images (narrower than the curves' own spread here)."""

    def curve(method, kernel, image):
        shift = 0.05 * int(image[-3:])  # images differ a lot, the methods' gap does not
        return np.linspace(0.9, 0.1 if method == "gradient" else 0.5, 7) - shift

    out = fake_output(tmp_path / "out", tables=lambda images, shard: {
        "occlusion": occlusion_rows(images, shard, ["gradient", "noise"], [8], curve)})
    aggregated = compute_aggregates(open_results(str(out)), BootstrapSettings(resamples=200))
    relative = aggregated["occlusion_relative"].to_pandas().sort_values("step")
    assert set(relative.method) == {"gradient"} and set(relative.baseline) == {"noise"}
    expected = np.linspace(0.9, 0.1, 7) - np.linspace(0.9, 0.5, 7)
    assert np.allclose(relative["mean"], expected, atol=1e-6)
    assert np.allclose(relative.ci_high - relative.ci_low, 0, atol=1e-6)  # the same gap in every image
    curves = aggregated["occlusion_curves"].to_pandas()
    assert (curves[curves.step > 0].ci_high - curves[curves.step > 0].ci_low > 0.05).all()
