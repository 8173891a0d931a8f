"""The agreement table (the gap, honestly): Kendall's τ-b against scipy, the paired bootstrap against a
per-resample loop, and the whole table on an output whose rankings are known in advance; the run
summary and the report (rendered in headless Chromium) lead with it."""

from __future__ import annotations

import itertools
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from scipy import stats

from benchmark.cli.main import main
from benchmark.results import OutputStore, ShardWriter
from benchmark.results.agreement import (
    agreement_table, bootstrap_agreement, headline_sentences, method_roles, method_sets, tau_b,
)
from benchmark.results.query import open_results
from benchmark.results.statistics import BootstrapSettings
from benchmark.results.summary import format_summary

from ..engine.jobs import TINY
from .fakes import image_ids, randomization_rows, shards_row, write_manifest
from .test_report import chromium

# --- Kendall's tau-b --------------------------------------------------------------------------


def test_tau_b_equals_scipy_with_ties_and_left_out_items() -> None:
    rng = np.random.default_rng(0)
    first = rng.integers(0, 4, size=(200, 7)).astype(float)  # many ties
    second = rng.integers(0, 4, size=(200, 7)).astype(float)
    ours = tau_b(first, second)
    for row in range(200):
        expected = stats.kendalltau(first[row], second[row]).statistic
        assert (np.isnan(ours[row]) and np.isnan(expected)) or abs(ours[row] - expected) < 1e-12
    continuous = rng.normal(size=(2, 9))
    assert abs(tau_b(continuous[0], continuous[1]) - stats.kendalltau(continuous[0], continuous[1]).statistic) < 1e-12
    gap = continuous.copy()
    gap[0, 3] = np.nan  # an item without a value is left out
    kept = np.delete(continuous, 3, axis=1)
    assert abs(tau_b(gap[0], gap[1]) - stats.kendalltau(kept[0], kept[1]).statistic) < 1e-12
    assert np.isnan(tau_b(np.ones(4), continuous[0, :4]))  # no order: undefined


# --- the paired bootstrap ---------------------------------------------------------------------


def separated(rng: np.random.Generator, order: list[float], images: int) -> np.ndarray:
    """[methods, images]: method m's values around order[m], far apart compared to the noise."""
    return np.asarray(order)[:, None] + rng.uniform(-0.01, 0.01, size=(len(order), images))


def test_identical_rankings_give_one_and_reversed_minus_one_with_degenerate_cis() -> None:
    rng = np.random.default_rng(1)
    check = separated(rng, [0.0, 1.0, 2.0, 3.0], 12)[None]
    same = separated(rng, [10.0, 20.0, 30.0, 40.0], 12)[None]
    reversed_ = separated(rng, [40.0, 30.0, 20.0, 10.0], 12)[None]
    result = bootstrap_agreement(check, np.concatenate([same, reversed_]), BootstrapSettings(resamples=300))
    np.testing.assert_array_equal(result.tau, [[1.0, -1.0]])
    np.testing.assert_array_equal(result.ci_low, [[1.0, -1.0]])
    np.testing.assert_array_equal(result.ci_high, [[1.0, -1.0]])


def test_bootstrap_equals_a_loop_over_resamples_with_scipy() -> None:
    """Each resample draws images with replacement, recomputes both sides' method means (NaN-aware) and τ-b."""
    rng = np.random.default_rng(2)
    methods, images = 5, 9
    check = rng.normal(size=(2, methods, images)) + np.arange(methods)[None, :, None] * 0.3
    faith = rng.normal(size=(1, methods, images)) - np.arange(methods)[None, :, None] * 0.2
    check[0, 2, 4] = np.nan  # a missing value: the mean of the others
    settings = BootstrapSettings(resamples=400, seed=7)
    result = bootstrap_agreement(check, faith, settings)
    draws = np.random.default_rng([settings.seed, images]).integers(0, images, size=(settings.resamples, images))
    for c in range(2):
        taus = []
        for draw in draws:
            taus.append(stats.kendalltau(np.nanmean(check[c][:, draw], axis=1), faith[0][:, draw].mean(axis=1)).statistic)
        low, high = np.percentile(taus, [2.5, 97.5])
        assert abs(result.ci_low[c, 0] - low) < 1e-12 and abs(result.ci_high[c, 0] - high) < 1e-12
        point = stats.kendalltau(np.nanmean(check[c], axis=1), faith[0].mean(axis=1)).statistic
        assert abs(result.tau[c, 0] - point) < 1e-12


# --- the method sets ----------------------------------------------------------------------------

METHODS = [{"name": "gradient"}, {"name": "lrp", "composite": "epsilon_plus_flat"},
           {"name": "lrp", "composite": "epsilon_plus_flat", "output_relevance": "logit"},
           {"name": "lrp", "composite": "alpha2beta1"}, {"name": "noise", "label": "baseline"}]


def test_noise_and_lrp_twins_come_from_the_job() -> None:
    noise, twins = method_roles({"spec": {"methods": METHODS}})
    assert noise == {"baseline"} and twins == {"lrp_epsilon_plus_flat": "lrp_epsilon_plus_flat_logit"}
    names = ["baseline", "gradient", "lrp_alpha2beta1", "lrp_epsilon_plus_flat", "lrp_epsilon_plus_flat_logit"]
    sets = {(s.lrp_seed, s.with_noise): s.names for s in method_sets(names, noise, twins)}
    assert sets[("one", True)] == {m: m for m in names[:4]}
    assert sets[("one", False)] == {m: m for m in names[1:4]}
    assert sets[("logit", True)]["lrp_epsilon_plus_flat"] == "lrp_epsilon_plus_flat_logit"
    assert sets[("logit", True)]["lrp_alpha2beta1"] == "lrp_alpha2beta1"  # no twin: itself


# --- the table on an output with known rankings ------------------------------------------------

SPEC = {**TINY, "methods": [{"name": "gradient"}, {"name": "lrp", "composite": "epsilon_plus_flat"},
                            {"name": "lrp", "composite": "epsilon_plus_flat", "output_relevance": "logit"},
                            {"name": "noise"}],
        "occlusion": {"kernels": [8, 4], "steps": 2, "orders": ["mif", "lif"], "imputers": ["blur", "mean"]}}
NAMES = ["gradient", "lrp_epsilon_plus_flat", "lrp_epsilon_plus_flat_logit", "noise"]
# SSIM to the trained map (lower ranks first): noise < lrp_logit < gradient < lrp; second_moment and max_abs alike
SSIM = {"noise": 0.0, "lrp_epsilon_plus_flat_logit": 0.1, "gradient": 0.2, "lrp_epsilon_plus_flat": 0.8}
# occlusion (MIF auc lower first; LIF auc higher first): both rank lrp (either seed) > gradient > noise
MIF = {"lrp_epsilon_plus_flat": 0.1, "lrp_epsilon_plus_flat_logit": 0.1, "gradient": 0.3, "noise": 0.9}
LIF = {"lrp_epsilon_plus_flat": 0.9, "lrp_epsilon_plus_flat_logit": 0.9, "gradient": 0.7, "noise": 0.5}
# eMPRT's entropy change (higher first): lrp > gradient > noise, faithfulness's order
EMPRT = {"lrp_epsilon_plus_flat": 0.5, "lrp_epsilon_plus_flat_logit": 0.5, "gradient": 0.3, "noise": 0.0}


def wobble(image: str) -> float:
    return 0.001 * (int(image.split("-")[1]) % 5)


def occlusion_table(images: list[str], shard: int) -> pa.Table:
    rows = []
    for method, kernel, order, imputer, image in itertools.product(NAMES, [8, 4], ["mif", "lif"], ["blur", "mean"], images):
        level = (MIF if order == "mif" else LIF)[method] + wobble(image)
        rows.append({"image_id": image, "method": method, "reduction": "sum", "target": 1, "kernel": kernel,
                     "order": order, "imputer": imputer, "curve": [level] * 3, "logit_curve": [level] * 3,
                     "auc": level, "aopc": 0.0, "shard": shard})
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def emprt_table(images: list[str], shard: int) -> pa.Table:
    rows = [{"image_id": image, "method": method, "reduction": "sum", "check": "emprt", "score": "entropy_change",
             "normalization": None, "absolute": absolute, "seed": 0, "mode": "top_down", "stage": 2, "layer": None,
             "target": 1, "compared_class": None, "value": EMPRT[method] + wobble(image), "bound": None,
             "coverage": None, "reason": None, "shard": shard}
            for method, absolute, image in itertools.product(NAMES, [False, True], images)]
    return pa.Table.from_pylist(rows)


@pytest.fixture(scope="module")
def known(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("agreement") / "out"
    store = OutputStore(str(out))
    manifest = write_manifest(store, [0, 1], 6, spec=SPEC)
    writer = ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"})
    for shard in (0, 1):
        images = image_ids(shard, 6)
        value = lambda method, image, normalization, **_: SSIM[method] + wobble(image) + (normalization == "none") * {
            "noise": 0.9, "lrp_epsilon_plus_flat_logit": 0.0, "gradient": 0.0, "lrp_epsilon_plus_flat": 0.0}[method]
        writer.commit(shard, {
            "randomization": randomization_rows(images, shard, NAMES, [1, 2], value, metrics=["ssim"],
                                                normalizations=["second_moment", "none"], absolute=[False, True]),
            "occlusion": occlusion_table(images, shard),
            "check_scores": emprt_table(images, shard),
            "shards": shards_row(shard, len(images)),
        }, {"spec_hash": manifest["spec_hash"]})
    return out


def rows_of(table: pd.DataFrame, **where) -> pd.DataFrame:
    selected = table
    for column, value in where.items():
        selected = selected[selected[column].isna()] if value is None else selected[selected[column] == value]
    return selected


def test_the_table_holds_the_known_taus(known) -> None:
    table = agreement_table(open_results(str(known)), BootstrapSettings(resamples=200))
    main_ssim = rows_of(table, check="mprt", normalization="second_moment", absolute=False, varied=None, lrp_seed="one")
    assert len(main_ssim) == 3 * 2 * 2 * 2  # mif, lif, srg x imputers x kernels x with/without noise
    # the check ranks noise > gradient > lrp, every faithfulness score lrp > gradient > noise: tau -1, CI [-1, -1]
    for column in ("tau", "ci_low", "ci_high"):
        assert (main_ssim[column] == -1.0).all(), column
    assert not main_ssim.ci_includes_zero.any()
    assert set(main_ssim[main_ssim.with_noise].methods) == {3} and set(main_ssim[~main_ssim.with_noise].methods) == {2}
    assert main_ssim.images.eq(12).all()
    emprt = rows_of(table, check="emprt", varied=None)
    assert (emprt.tau == 1.0).all() and emprt.normalization.isna().all()  # entropy change: higher ranks first
    # LRP seeded with the logit: its SSIM (0.1) ranks it between noise and gradient; tau = (1 - 2) / 3
    logit = rows_of(table, check="mprt", normalization="second_moment", absolute=False, varied="lrp_seed",
                    with_noise=True)
    assert len(logit) == 12 and np.allclose(logit.tau, -1 / 3)
    assert all("lrp_epsilon_plus_flat" in methods for methods in logit.method_list)
    # normalization 'none' moves noise last in the check's ranking: the ranking of the check's means, against scipy
    none = rows_of(table, check="mprt", normalization="none", absolute=False, with_noise=True, faithfulness="mif",
                   imputer="blur", kernel=8, lrp_seed="one")
    means = {m: SSIM[m] + 0.9 * (m == "noise") for m in ("gradient", "lrp_epsilon_plus_flat", "noise")}
    expected = stats.kendalltau([-means[m] for m in means], [-MIF[m] for m in means]).statistic
    assert none.varied.tolist() == ["normalization"] and abs(none.tau.iloc[0] - expected) < 1e-12
    assert rows_of(table, check="mprt", absolute=True, varied=None).shape[0] == 24  # absolute: a main variant
    headline = table[table.headline]
    assert len(headline) == 1 and headline.iloc[0][["faithfulness", "imputer", "kernel"]].tolist() == ["mif", "blur", 8]
    assert "τ = -1.00 [-1.00, -1.00]: the check ranks methods against their faithfulness" in headline_sentences(table)[0]


def test_aggregate_summary_and_report_lead_with_the_table(known, tmp_path) -> None:
    assert main(["aggregate", str(known), "--no-progress", "--resamples", "200"]) == 0
    written = open_results(str(known)).aggregate("agreement").to_pandas()
    assert len(written) and written.headline.sum() == 1
    scores = open_results(str(known)).aggregate("occlusion_scores").to_pandas()
    srg = scores[scores.score == "srg"].set_index(["method", "kernel", "imputer"])["mean"]
    assert srg.index.size == 4 * 2 * 2 and scores[scores.score == "srg"]["order"].isna().all()
    assert abs(srg[("gradient", 8, "blur")] - (LIF["gradient"] - MIF["gradient"])) < 1e-9

    summary = format_summary(OutputStore(str(known)))
    assert summary.index("The gap") < summary.index("Mean SSIM")
    assert "warning: the model has untrained weights (random (test))" in summary
    assert "τ = -1.00 [-1.00, -1.00]" in summary and "MIF blur k=8" in summary

    assert main(["report", str(known), "--no-progress"]) == 0
    html = (known / "report.html").read_text(encoding="utf-8")
    headings = re.findall(r"<h2[^>]*>(.*?)</h2>", html)
    assert "The gap, honestly" in headings[0]
    assert "untrained weights" in html and "-1.00 [-1.00, -1.00] *" in html
    assert "Sensitivity: choices that are not about the explanation" in html
    if chromium() is None:
        pytest.skip("headless Chromium is not installed")
    probe = """<script>window.addEventListener('load', () => {
      const first = document.querySelector('h2');
      const table = document.querySelector('table.data');
      document.body.setAttribute('data-first', first.textContent);
      document.body.setAttribute('data-rows', table.querySelectorAll('tbody tr').length);
      document.body.setAttribute('data-cell', table.querySelector('tbody tr td:nth-child(4)').textContent);
    });</script></body>"""
    page = tmp_path / "page.html"
    page.write_text(html.replace("</body>", probe), encoding="utf-8")
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", page.as_uri()]
    dom = subprocess.run(command, capture_output=True, text=True, timeout=180).stdout
    found = re.search(r'<body data-first="([^"]*)" data-rows="(\d+)" data-cell="([^"]*)"', dom)
    assert found, dom[:500]
    assert found.group(1).endswith("The gap, honestly: randomization checks vs. faithfulness")  # section 1
    assert int(found.group(2)) == 3  # MPRT SSIM signed and absolute, eMPRT
    assert found.group(3) == "-1.00 [-1.00, -1.00] *"


def test_a_run_with_one_method_has_no_table_and_its_summary_says_nothing_of_it(tmp_path) -> None:
    out = tmp_path / "out"
    store = OutputStore(str(out))
    spec = {**SPEC, "methods": [{"name": "gradient"}]}
    manifest = write_manifest(store, [0], 3, spec=spec)
    images = image_ids(0, 3)
    ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"}).commit(0, {
        "randomization": randomization_rows(images, 0, ["gradient"], [1], lambda **_: 0.5, metrics=["ssim"]),
        "occlusion": occlusion_table(images, 0).filter(pc.field("method") == "gradient"),
        "shards": shards_row(0, 3),
    }, {"spec_hash": manifest["spec_hash"]})
    assert agreement_table(open_results(str(out))).empty
    assert "The gap" not in format_summary(store) and "Mean SSIM" in format_summary(store)
