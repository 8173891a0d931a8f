"""Faithfulness in both orders and the agreement table on the trained network (the digits test bed,
through the pipeline): what must hold on any trained network, and the table against a direct
computation from the run's own rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from benchmark.results import OutputStore, read_table
from benchmark.results.query import open_results

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def table(out, name: str) -> pd.DataFrame:
    return read_table(OutputStore(str(out)), name).to_pandas()


def test_every_order_and_imputer_has_its_curves_and_they_meet_when_every_tile_is_occluded(gap_run) -> None:
    rows = table(gap_run, "occlusion")
    assert rows.groupby(["order", "imputer"]).size().to_dict() == {
        (order, imputer): 16 * 5 for order in ("lif", "mif") for imputer in ("blur", "mean")}
    curves = rows.set_index(["image_id", "method", "imputer", "order"]).curve.map(np.asarray).unstack("order")
    first = np.stack(curves.mif.map(lambda c: c[0]))
    assert np.array_equal(first, np.stack(curves.lif.map(lambda c: c[0])))  # f_0: the unoccluded image
    # 16 tiles of 8x8 px, 16 steps: both orders end on the fully imputed image
    assert np.array_equal(np.stack(curves.mif.map(lambda c: c[-1])), np.stack(curves.lif.map(lambda c: c[-1])))
    assert (rows.curve.map(len) == 17).all()


def test_srg_separates_explanations_from_the_random_order(gap_run) -> None:
    """A random tile order makes MIF and LIF the same random walk: the noise baseline's SRG is ~0, while
    a map that finds the evidence on a trained network drops the MIF curve and keeps the LIF one up."""
    scores = open_results(str(gap_run)).aggregate("occlusion_scores").to_pandas()
    srg = scores[scores.score == "srg"].set_index(["imputer", "method"])
    for imputer in ("blur", "mean"):
        noise = srg.loc[(imputer, "noise")]
        assert noise.ci_low < 0 < noise.ci_high, imputer
        for method in ("gradient_x_input", "lrp_epsilon_plus_flat"):
            found = srg.loc[(imputer, method)]
            assert found.ci_low > 0 and abs(noise["mean"]) < 0.25 * found["mean"], (imputer, method)
    # the flat fill removes more of a digit than its blurred copy does: every map's SRG grows with it
    methods = ["gradient_x_input", "guided_backprop", "lrp_epsilon_plus_flat"]
    assert (srg.loc["mean"].loc[methods, "mean"] > 2 * srg.loc["blur"].loc[methods, "mean"]).all()


def test_the_agreement_table_equals_a_direct_computation_from_the_rows(gap_run) -> None:
    agreement = open_results(str(gap_run)).aggregate("agreement").to_pandas()
    check = table(gap_run, "randomization")
    check = check[(check.metric == "ssim") & ~check.absolute]
    per_image = check.groupby(["method", "image_id"]).value.mean()  # over the stages (one seed)
    occlusion = table(gap_run, "occlusion").set_index(["imputer", "order", "method", "image_id"]).auc.sort_index()
    methods = ["gradient_x_input", "guided_backprop", "lrp_epsilon_plus_flat", "noise"]
    for imputer in ("blur", "mean"):
        mif = occlusion.loc[(imputer, "mif")].groupby("method").mean()
        lif = occlusion.loc[(imputer, "lif")].groupby("method").mean()
        srg = (occlusion.loc[(imputer, "lif")] - occlusion.loc[(imputer, "mif")]).groupby("method").mean()
        goodness = {"mif": -mif, "lif": lif, "srg": srg}
        for faithfulness, good in goodness.items():
            for with_noise in (True, False):
                ranked = methods if with_noise else methods[:-1]
                expected = stats.kendalltau(-per_image.groupby("method").mean()[ranked], good[ranked]).statistic
                row = agreement[(agreement["check"] == "mprt") & (agreement.score == "ssim") & ~agreement.absolute
                                & (agreement.faithfulness == faithfulness) & (agreement.imputer == imputer)
                                & (agreement.with_noise == with_noise) & (agreement.lrp_seed == "one")]
                assert len(row) == 1 and abs(row.tau.iloc[0] - expected) < 1e-12, (imputer, faithfulness, with_noise)
    assert agreement.headline.sum() == 1
    assert set(agreement.varied.dropna()) == {"lrp_seed"}  # one normalization; absolute MPRT is a main variant
