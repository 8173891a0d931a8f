"""Activation statistics (supplement I, J) and Cauchy overtaking probabilities (Theorem 2, supplement E)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
import torch
from scipy import stats

from ..attribution.attribution_models import make_inputs, registry_bundle, tiny_efficientnet
from benchmark.config.spec import ActivationsSpec
from benchmark.experiments.activations import (
    QUANTILES,
    ActivationStatistics,
    activation_layers,
    batched_quantiles,
    mean_quantiles,
    overtaking_probabilities,
)

from .walking import as_written


def test_the_eighteen_quantiles_run_from_095_down_to_010() -> None:
    assert len(QUANTILES) == 18 and QUANTILES[0] == 0.95 and QUANTILES[-1] == 0.10
    assert np.allclose(np.diff(QUANTILES), -0.05)


def test_batched_quantiles_equal_numpy() -> None:
    values = torch.randn(3, 1001, generator=torch.Generator().manual_seed(0)).double()
    values[1, :600] = 0.0  # ReLU-like ties
    q = torch.tensor(QUANTILES, dtype=torch.float64)
    expected = np.quantile(values.numpy(), np.asarray(QUANTILES), axis=1).T
    np.testing.assert_allclose(batched_quantiles(values, q).numpy(), expected, rtol=1e-12, atol=1e-12)


def test_default_layers_per_family() -> None:
    spec = ActivationsSpec(enabled=True)
    assert len(activation_layers(spec, registry_bundle("resnet50"))) == 16  # residual blocks = the paper's levels
    assert len(activation_layers(spec, registry_bundle("efficientnet-b0"))) == 16
    densenet = activation_layers(spec, registry_bundle("densenet121"))
    assert len(densenet) == 58 + 3 + 1 and densenet[-1] == "final_relu"
    with pytest.raises(ValueError, match="no module"):
        activation_layers(ActivationsSpec(enabled=True, layers=r"^nothing$"), registry_bundle("resnet34"))


def test_statistics_of_one_forward_pass_become_rows() -> None:
    model = tiny_efficientnet()
    statistics = ActivationStatistics(ActivationsSpec(enabled=True), model)
    inputs = make_inputs(model, n=2)
    captured: dict[str, torch.Tensor] = {}
    modules = dict(model.module.named_modules())
    handles = [
        modules[n].register_forward_hook(lambda m, i, o, n=n: captured.__setitem__(n, o)) for n in statistics.layers
    ]
    with torch.no_grad(), statistics.capture():
        model.module(inputs)
    for handle in handles:
        handle.remove()
    table = statistics.table(["a", "b"])
    assert table.num_rows == 2 * len(statistics.layers) and not modules[statistics.layers[0]]._forward_hooks
    rows = as_written(table, "activations", shard=4).to_pandas()
    for row in rows.itertuples():
        values = captured[row.layer][["a", "b"].index(row.image_id)].flatten().numpy()
        np.testing.assert_allclose(row.quantiles, np.quantile(values, QUANTILES), rtol=1e-5, atol=1e-6)
        assert row.nonpositive == pytest.approx((values <= 0).mean())
        assert statistics.layers[row.layer_index] == row.layer
    assert (rows.shard == 4).all()


def activations_table(rows: list[tuple[str, str, int, list[float]]]) -> pa.Table:
    return pa.table(
        {
            "model": [r[0] for r in rows],
            "layer": [r[1] for r in rows],
            "layer_index": pa.array([r[2] for r in rows], pa.int32()),
            "quantiles": pa.array([r[3] for r in rows], pa.list_(pa.float32())),
            "nonpositive": [0.5] * len(rows),
        }
    )


def test_mean_quantiles_average_over_images() -> None:
    first = [float(v) for v in np.linspace(2.0, 0.3, 18)]
    second = [float(v) for v in np.linspace(4.0, 0.1, 18)]
    table = mean_quantiles(activations_table([("m", "l0", 0, first), ("m", "l0", 0, second), ("m", "l1", 1, first)]))
    assert table.num_rows == 2
    mean = (np.array(first) + np.array(second)) / 2
    np.testing.assert_allclose(table.column("quantiles")[0].as_py(), mean, rtol=1e-6)
    assert table.column("layer_index").type == pa.int32()


def test_overtaking_probabilities_follow_the_cauchy_tail() -> None:
    positive = [float(v) for v in np.linspace(3.0, 0.2, 18)]  # V(0.95) = 3 … V(0.10) = 0.2
    negative = [-v for v in reversed(positive)]  # all activations negative (EfficientNet's lower layers)
    sparse = [1.0] * 9 + [0.0] * 9  # ReLU layer, bottom half zero
    layers = [("m", "pos", 0, positive), ("m", "neg", 1, negative), ("m", "zero", 2, sparse)]
    table = overtaking_probabilities(mean_quantiles(activations_table(layers))).to_pandas()
    assert len(table) == 3 * 3 * 9
    assert list(table.columns) == ["model", "layer", "layer_index", "q_high", "q_low", "K", "gamma", "probability"]
    value = dict(zip(QUANTILES, positive))
    for row in table[table.layer == "pos"].itertuples():
        K = value[row.q_high] / value[row.q_low]
        gamma = math.sqrt(row.q_low / (1 - row.q_high))
        assert row.K == pytest.approx(K, rel=1e-6) and row.gamma == pytest.approx(gamma)
        assert row.probability == pytest.approx(0.5 - math.atan(K / gamma) / math.pi, rel=1e-6)
        assert row.probability == pytest.approx(stats.cauchy(scale=gamma).sf(K), rel=1e-6)
    inverted = dict(zip(QUANTILES, negative))
    for row in table[table.layer == "neg"].itertuples():  # "K is computed using the inverse" (supplement I)
        assert row.K == pytest.approx(inverted[row.q_low] / inverted[row.q_high], rel=1e-6) and row.K >= 1
    zero = table[table.layer == "zero"]
    assert np.isinf(zero.K).all() and (zero.probability == 0).all()  # flat zero, as ResNet-50 levels 9, 12
    # the paper's reading: higher K or fewer small activations (smaller γ) make overtaking rarer
    pos = table[(table.layer == "pos") & (table.q_high == 0.95)].sort_values("q_low")
    assert (np.diff(pos.probability.to_numpy()) > 0).all()
