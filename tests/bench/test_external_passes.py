"""Speed accounting of Captum's and the user's methods: the passes known in advance are the passes made."""

from __future__ import annotations

import pytest
import torch

from benchmark.attribution import AttributionContext, build_method
from benchmark.bench.accounting import PassRecorder, passes_per_state, uncounted
from benchmark.config import validate_job
from benchmark.models import load_model

EXPLAIN = """
import torch


def saliency(model, inputs, targets):
    x = inputs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x).gather(1, targets[:, None]).sum(), x)
    return grad
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("explain")
    (folder / "explain.py").write_text(EXPLAIN)
    spec = validate_job({
        "name": "passes",
        "model": {"name": "torchvision:resnet18", "weights": "random", "num_classes": 10},
        "dataset": {"kind": "synthetic", "crop": 32},
        "methods": [
            {"name": "gradient"},
            {"name": "captum:Saliency", "args": {"abs": False}},
            {"name": "captum:IntegratedGradients", "args": {"n_steps": 3}},
            {"name": f"{folder}/explain.py:saliency", "passes": {"forward": 1, "backward": 1}, "label": "declared"},
            {"name": f"{folder}/explain.py:saliency", "label": "undeclared"},
        ],
        "runtime": {"device": "cpu"},
    })
    model = load_model(spec)
    return model, [build_method(method, model) for method in spec.methods]


def test_expected_passes_leave_out_only_the_unknown(setup) -> None:
    _, methods = setup
    assert passes_per_state(methods) == 1 + 1 + 3 + 1  # gradient, Saliency, IG with 3 steps, the declared callable
    assert uncounted(methods) == ["undeclared"]


@pytest.mark.parametrize("index", [1, 2, 3])
def test_known_passes_are_the_passes_made(setup, index) -> None:
    model, methods = setup
    method = methods[index]
    inputs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with PassRecorder(model.module) as recorder:
        method.attribute(model, inputs, torch.tensor([0, 1, 2, 3]), AttributionContext(list("abcd"), chunk_size=2))
    passes = method.passes()
    assert recorder.images(backward=True) == 4 * passes.backward and recorder.images(backward=False) == 0
