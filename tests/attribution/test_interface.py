"""The common interface: building, pass accounting, contexts and channel reductions."""

from __future__ import annotations

import pytest
import torch

from benchmark.attribution import (
    METHODS,
    AttributionContext,
    GradientXInput,
    GuidedBackprop,
    IntegratedGradients,
    LRP,
    Noise,
    SmoothGrad,
    build_method,
    reduce_channels,
)
from benchmark.attribution.gradient import Gradient
from benchmark.config import validate_job
from benchmark.config.spec import (
    GradientInputSpec,
    GradientSpec,
    GuidedBackpropSpec,
    IntegratedGradientsSpec,
    LRPSpec,
    NoiseSpec,
    SmoothGradSpec,
)


def test_every_registered_method_is_a_job_method() -> None:
    """The registry is the spec's source of truth: each registered name validates with its spec class."""
    for name, method in METHODS.items():
        spec = validate_job({"name": "t", "model": {"name": "resnet50"}, "dataset": {"kind": "synthetic"},
                             "methods": [{"name": name}]})
        assert type(spec.methods[0]) is method.spec_type and spec.methods[0].name == name


@pytest.mark.parametrize(
    ("spec", "cls", "forward", "backward"),
    [
        (GradientSpec(name="gradient"), Gradient, 1, 1),
        (GradientInputSpec(name="gradient_x_input"), GradientXInput, 1, 1),
        (IntegratedGradientsSpec(name="integrated_gradients", steps=16), IntegratedGradients, 16, 16),
        (SmoothGradSpec(name="smoothgrad", samples=5), SmoothGrad, 5, 5),
        (GuidedBackpropSpec(name="guided_backprop"), GuidedBackprop, 1, 1),
        (LRPSpec(name="lrp", composite="zplus"), LRP, 1, 1),
        (NoiseSpec(name="noise"), Noise, 0, 0),
    ],
)
def test_build_method_and_passes(resnet18, spec, cls, forward: int, backward: int) -> None:
    method = build_method(spec, resnet18)
    assert type(method) is cls and method.id == spec.method_id
    assert (method.passes().forward, method.passes().backward) == (forward, backward)


def test_label_becomes_the_id(resnet18) -> None:
    assert build_method(LRPSpec(name="lrp", composite="epsilon", label="eps"), resnet18).id == "eps"


def test_context_checks() -> None:
    with pytest.raises(ValueError, match="chunk_size"):
        AttributionContext(image_keys=["a"], chunk_size=0)
    with pytest.raises(ValueError, match="image keys"):
        AttributionContext(image_keys=["a"]).check_batch(torch.zeros(2, 3, 4, 4))


def test_reduce_channels_against_explicit_formulas() -> None:
    maps = torch.randn(2, 3, 5, 4, generator=torch.Generator().manual_seed(0))
    r, g, b = maps[:, 0], maps[:, 1], maps[:, 2]
    torch.testing.assert_close(reduce_channels(maps, "sum"), r + g + b)
    torch.testing.assert_close(reduce_channels(maps, "mean"), (r + g + b) / 3)
    torch.testing.assert_close(reduce_channels(maps, "l2"), torch.sqrt(r * r + g * g + b * b))
    assert reduce_channels(maps, "sum").shape == (2, 5, 4)
    with pytest.raises(ValueError, match="unknown reduction"):
        reduce_channels(maps, "max")
    with pytest.raises(ValueError, match=r"\[N,C,H,W\]"):
        reduce_channels(maps[0], "sum")
