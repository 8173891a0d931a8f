"""Our sMPRT, eMPRT and random-logit scores against Quantus 0.6 on the same maps (skipped without
Quantus: ``pip install quantus``). Quantus' own numbers are reproduced exactly from its documented
choices, so each difference to ours is one named choice (docs/repaired-checks.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ..attribution.attribution_models import TinyResidualCNN, keys, make_bundle, make_inputs, seeded
from benchmark.attribution import build_method
from benchmark.bench import quantus_checks
from benchmark.config.spec import GradientSpec, LRPSpec
from benchmark.experiments.random_logit import other_classes

quantus = pytest.importorskip("quantus")
pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def setting():
    model = make_bundle(seeded(lambda: TinyResidualCNN()), "resnet", "tiny-residual")
    x = make_inputs(model, n=6, size=16).numpy()
    y = np.array([1, 7, 3, 0, 9, 5])
    return model, x, y


@pytest.mark.parametrize("method", [GradientSpec(name="gradient"), LRPSpec(name="lrp", composite="epsilon")])
def test_quantus_values_are_reproduced_from_its_choices(setting, method) -> None:
    model, x, y = setting
    method = build_method(method, model)
    for steps in (quantus_checks.random_logit(model, method, x, y, 10, 0, 4, keys(6)),
                  quantus_checks.efficient_mprt(model, method, x, y, 0, 4),
                  quantus_checks.smooth_mprt(model, method, x, y, 0, 4, 3)):
        assert len(steps.quantus) == 6 and np.isfinite(steps.quantus).all()
        np.testing.assert_allclose(steps.reproduced, steps.quantus, rtol=1e-9, atol=1e-12, err_msg=steps.check)
        assert steps.steps[0][1] == pytest.approx(steps.steps[1][1])


def test_quantus_draws_the_other_class_by_batch_position_and_we_by_image(setting) -> None:
    _, _, y = setting
    targets = np.array([0, 0, 0, 0, 0, 0, 0, 0])
    drawn = quantus_checks.quantus_offclasses(targets, 10, seed=0, batch=4)
    assert np.array_equal(drawn[:4], drawn[4:])  # reseeded per batch: the same positions draw the same classes
    ours = other_classes([f"img-{i}" for i in range(8)], torch.from_numpy(targets), 10, seed=0).numpy()
    assert not np.array_equal(ours[:4], ours[4:]) and (ours != 0).all()


def test_emprt_bins_from_axes_versus_elements() -> None:
    """Quantus 0.6's Sturges rule counts the axes of a map ([1, H, W]: 3) instead of its pixels."""
    from quantus.functions import n_bins_func

    maps = np.random.default_rng(0).normal(size=(4, 1, 32, 32))
    assert n_bins_func.sturges_formula(maps) == 2  # int(log2(3) + 1); Quantus then raises it to its minimum 10
    from benchmark.metrics import HistogramBins

    assert HistogramBins("sturges", min_bins=2).counts(torch.from_numpy(maps[:, 0])).tolist() == [11] * 4  # log2(1024) + 1
