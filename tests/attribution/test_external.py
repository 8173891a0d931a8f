"""Captum attribution classes and the user's callables as job methods, checked against Captum itself."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam

from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.base import MethodNotSupported
from benchmark.config.spec import CallableSpec, CaptumSpec, GradientSpec, IntegratedGradientsSpec

EXPLAIN = '''
import numpy as np
import torch

CALLS = []


def gradient_x_input(model, inputs, targets, scale=1.0):
    """Quantus' explain_func convention: (model, inputs, targets, **kwargs) -> maps."""
    CALLS.append(inputs.shape[0])
    x = inputs.clone().requires_grad_(True)
    logits = model(x)
    (grad,) = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), x)
    return scale * grad * inputs


def channel_sum_numpy(model, inputs, targets):
    assert isinstance(inputs, np.ndarray) and isinstance(targets, np.ndarray)
    return inputs.sum(axis=1)  # [N, H, W]


def wrong_shape(model, inputs, targets):
    return torch.zeros(inputs.shape[0], 5)
'''


@pytest.fixture
def explain_file(tmp_path: Path) -> Path:
    path = tmp_path / "explain.py"
    path.write_text(EXPLAIN)
    return path


def batch(n: int = 3, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, size, size, generator=generator), torch.tensor([1, 4, 7, 2, 9][:n])


def context(n: int, chunk: int = 2) -> AttributionContext:
    return AttributionContext([f"img{i}" for i in range(n)], chunk_size=chunk)


def test_captum_saliency_equals_our_gradient(resnet18) -> None:
    inputs, targets = batch()
    ours = build_method(GradientSpec(name="gradient"), resnet18).attribute(resnet18, inputs, targets, context(3))
    captum = build_method(CaptumSpec(name="captum:Saliency", args={"abs": False}), resnet18)
    maps = captum.attribute(resnet18, inputs, targets, context(3))  # chunks of 2 images: 2 + 1
    assert captum.id == "captum:Saliency" and (captum.passes().forward, captum.passes().backward) == (1, 1)
    torch.testing.assert_close(maps, ours, atol=1e-6, rtol=0)


def test_captum_integrated_gradients_batched_by_chunks(resnet18) -> None:
    inputs, targets = batch(2)
    args = {"n_steps": 6, "method": "riemann_middle"}
    method = build_method(CaptumSpec(name="captum:IntegratedGradients", args=args), resnet18)
    assert method.call == args and method.passes().forward == 6
    maps = method.attribute(resnet18, inputs, targets, context(2, chunk=4))  # internal_batch_size = 4 inputs
    expected = IntegratedGradients(resnet18.module).attribute(inputs, target=targets, **args)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)
    ours = build_method(IntegratedGradientsSpec(name="integrated_gradients", steps=6), resnet18)
    torch.testing.assert_close(maps, ours.attribute(resnet18, inputs, targets, context(2)), atol=1e-5, rtol=1e-4)


def test_captum_layer_method_is_upsampled_to_the_input(resnet18) -> None:
    inputs, targets = batch(2, size=64)
    method = build_method(CaptumSpec(name="captum:LayerGradCam", args={"layer": "layer3", "relu_attributions": True}),
                          resnet18)
    maps = method.attribute(resnet18, inputs, targets, context(2))
    layer = LayerGradCam(resnet18.module, resnet18.module.layer3).attribute(inputs, target=targets, relu_attributions=True)
    assert layer.shape == (2, 1, 4, 4) and maps.shape == (2, 1, 64, 64)
    torch.testing.assert_close(maps, LayerAttribution.interpolate(layer, (64, 64), "bilinear"), atol=1e-6, rtol=0)


def test_captum_errors_name_what_is_wrong(resnet18) -> None:
    with pytest.raises(MethodNotSupported, match="no attribution class 'Saliancy'; close: Saliency"):
        build_method(CaptumSpec(name="captum:Saliancy"), resnet18)
    with pytest.raises(MethodNotSupported, match=r"'steps' is an argument of neither IntegratedGradients\(\) "
                                                 r"\(multiply_by_inputs\) nor its attribute\(\) \(baselines, "):
        build_method(CaptumSpec(name="captum:IntegratedGradients", args={"steps": 3}), resnet18)
    with pytest.raises(MethodNotSupported, match=r"LayerGradCam\(\) needs layer \(a module name of the model\)"):
        build_method(CaptumSpec(name="captum:LayerGradCam"), resnet18)
    with pytest.raises(MethodNotSupported, match="layer 'layer9' is not a module of resnet18"):
        build_method(CaptumSpec(name="captum:LayerGradCam", args={"layer": "layer9"}), resnet18)


def test_callable_method_is_called_in_chunks(resnet18, explain_file) -> None:
    inputs, targets = batch(5)
    spec = CallableSpec(name=f"{explain_file}:gradient_x_input", args={"scale": 2.0})
    method = build_method(spec, resnet18)
    assert method.id == "gradient_x_input" and method.passes() is None
    maps = method.attribute(resnet18, inputs, targets, context(5, chunk=2))
    module = __import__("sys").modules[method.function.__module__]
    assert module.CALLS == [2, 2, 1]
    x = inputs.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(resnet18.module(x).gather(1, targets[:, None]).sum(), x)
    torch.testing.assert_close(maps, 2.0 * grad * inputs, atol=1e-6, rtol=1e-5)
    declared = CallableSpec(name=f"{explain_file}:gradient_x_input", passes={"forward": 1, "backward": 1})
    assert build_method(declared, resnet18).passes().backward == 1


def test_callable_with_numpy_arrays_and_two_dimensional_maps(resnet18, explain_file) -> None:
    inputs, targets = batch(3)
    method = build_method(CallableSpec(name=f"{explain_file}:channel_sum_numpy", arrays="numpy"), resnet18)
    maps = method.attribute(resnet18, inputs, targets, context(3))
    assert maps.shape == (3, 1, 32, 32)
    torch.testing.assert_close(maps[:, 0], inputs.sum(1))


def test_callable_errors(resnet18, explain_file) -> None:
    inputs, targets = batch(2)
    method = build_method(CallableSpec(name=f"{explain_file}:wrong_shape"), resnet18)
    with pytest.raises(ValueError, match=r"method 'wrong_shape' .* returned maps of shape \(2, 5\); expected \[N,H,W\] "
                                         r"or \[N,C,H,W\] with N=2, H×W=32×32"):
        method.attribute(resnet18, inputs, targets, context(2))
    with pytest.raises(MethodNotSupported, match="has no 'missing'; callables there: channel_sum_numpy"):
        build_method(CallableSpec(name=f"{explain_file}:missing"), resnet18)
    with pytest.raises(MethodNotSupported, match="no module named 'no_such_package'"):
        build_method(CallableSpec(name="no_such_package.explain:f"), resnet18)

