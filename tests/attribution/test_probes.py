"""Build-time probes of models we do not know: LRP's conservation and activation functions outside modules."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop
from zennit.canonizers import SequentialMergeBatchNorm

from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.base import MethodNotSupported
from benchmark.attribution.probes import conservation_probe
from benchmark.config import SpecError, validate_job
from benchmark.config.spec import GuidedBackpropSpec, LRPSpec
from benchmark.engine.driver import prepare_run
from benchmark.models import load_model

EXAMPLES = Path(__file__).resolve().parents[2] / "jobs" / "examples"

NETS = '''
import torch
import torch.nn.functional as F
from torch import nn


class Transformerish(nn.Module):
    """Patches, LayerNorm, a GELU MLP: what ViTs are made of."""

    def __init__(self, num_classes):
        super().__init__()
        self.patches = nn.Conv2d(3, 8, 8, stride=8)
        self.norm = nn.LayerNorm(8)
        self.mlp = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 8))
        self.head = nn.Linear(8, num_classes)

    def forward(self, x):
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.mlp(self.norm(tokens)).mean(1))


class FunctionalResidual(nn.Module):
    """A residual sum and ReLUs as functions: no hook sees them."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = x + F.relu(self.conv2(x))
        return self.fc(self.pool(x).flatten(1))


class OutOfOrder(nn.Module):
    """The BatchNorm follows conv1 in the forward pass but conv2 in definition order."""

    def __init__(self, num_classes):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x):
        x = self.relu(self.conv2(self.relu(self.bn(self.conv1(x)))))
        return self.fc(self.pool(x).flatten(1))


def transformerish(num_classes):
    return Transformerish(num_classes)


def functional_residual(num_classes):
    return FunctionalResidual(num_classes)


def out_of_order(num_classes):
    model = OutOfOrder(num_classes)
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    return model
'''


@pytest.fixture(scope="module")
def nets(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("nets")
    (folder / "nets.py").write_text(NETS)
    shutil.copy(EXAMPLES / "tiny_net.py", folder / "tiny_net.py")
    return folder


def job(name: str, methods: list[dict] | None = None, **model) -> dict:
    return {
        "name": "probe",
        "model": {"name": name, "num_classes": 10, **model},
        "dataset": {"kind": "synthetic", "synthetic_images": 2, "shard_size": 1, "crop": 32},
        "methods": methods or [{"name": "gradient"}],
        "randomization": {"max_boundaries": 1},
        "occlusion": {"kernels": [16], "steps": 2},
        "runtime": {"device": "cpu", "batch_size": 2},
    }


def bundle(name: str, **model):
    return load_model(validate_job(job(name, **model)))


def lrp(model, composite: str = "epsilon_plus_flat"):
    return build_method(LRPSpec(name="lrp", composite=composite), model)


def test_a_conv_batchnorm_relu_net_passes_and_its_lrp_conserves(nets) -> None:
    model = bundle(f"{nets}/tiny_net.py:build")
    before = {k: v.clone() for k, v in model.module.state_dict().items()}
    method = lrp(model, "epsilon")
    probe = model.probes["lrp_conservation"]
    assert probe["passed"] and probe["input_relevance"] == pytest.approx([1.0, 1.0], abs=1e-4)
    assert not probe["breaking_modules"] and abs(probe["between_modules"]) < 1e-6
    # the probe ran on a copy: the model is untouched, no hook left
    assert all(torch.equal(before[k], v) for k, v in model.module.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.module.modules())
    # and LRP on the model conserves relevance up to what biases and ε absorb (zennit's generic BatchNorm merging)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    maps = method.attribute(model, x, torch.tensor([1, 2]), AttributionContext(["a", "b"]))
    assert maps.shape == x.shape and torch.isfinite(maps).all()


def test_a_torchvision_resnet_passes_with_zennits_resnet_canonizer() -> None:
    model = bundle("torchvision:resnet18", weights="random")
    lrp(model)
    assert model.probes["lrp_conservation"]["passed"]


def test_layernorm_and_gelu_model_is_refused_naming_layernorm(nets) -> None:
    model = bundle(f"{nets}/nets.py:transformerish")
    with pytest.raises(MethodNotSupported) as error:
        lrp(model)
    message = str(error.value)
    assert "fails the conservation probe" in message and "LayerNorm (1: norm)" in message
    assert "GELU" not in message.split("modules that do not conserve relevance")[1]  # zennit passes relevance through GELU


def test_vit_is_refused_naming_layernorm_and_attention() -> None:
    kwargs = {"image_size": 32, "patch_size": 16, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "mlp_dim": 16}
    model = bundle("torchvision.models.vision_transformer:VisionTransformer", kwargs=kwargs)
    with pytest.raises(MethodNotSupported, match=r"LayerNorm \(3: encoder\.layers\.encoder_layer_0\.ln_1.*"
                                                 r"MultiheadAttention \(1: encoder\.layers\.encoder_layer_0\.self_attention\)"):
        lrp(model)


def test_functional_residual_is_refused_as_a_break_between_modules(nets) -> None:
    model = bundle(f"{nets}/nets.py:functional_residual")
    with pytest.raises(MethodNotSupported, match="relevance also changes between modules, in functional operations"):
        lrp(model)
    report = model.probes["lrp_conservation"]
    assert report["between_modules"] > 0.5 and min(report["input_relevance"]) > 1.5  # the skip doubles relevance


def test_batchnorm_merged_into_the_wrong_layer_is_refused(nets) -> None:
    model = bundle(f"{nets}/nets.py:out_of_order")
    report = conservation_probe(model, [SequentialMergeBatchNorm()])
    assert not report.passed and "change the model's outputs" in report.error


def test_lrp_refusal_happens_before_any_work(nets, tmp_path) -> None:
    spec = validate_job(job(f"{nets}/nets.py:transformerish", [{"name": "gradient"}, {"name": "lrp"}]))
    with pytest.raises(SpecError, match=r"job 'probe' cannot run: LRP \(lrp_epsilon_plus_flat\) is refused .*LayerNorm"):
        prepare_run(spec, str(tmp_path / "out"))
    assert not (tmp_path / "out" / "manifest.json").exists() and not (tmp_path / "out" / "randomization").exists()


def test_guided_backprop_refuses_functional_relus(nets) -> None:
    model = bundle(f"{nets}/nets.py:functional_residual")
    with pytest.raises(MethodNotSupported, match=r"calls activation functions outside activation modules.*: "
                                                 r"relu in '\(model\)' \(2 calls\)"):
        build_method(GuidedBackpropSpec(name="guided_backprop"), model)


def test_guided_backprop_on_a_model_of_modules_equals_captum(nets) -> None:
    model = bundle(f"{nets}/tiny_net.py:build")
    method = build_method(GuidedBackpropSpec(name="guided_backprop"), model)
    assert model.probes["functional_activations"] == {"calls": []}
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    targets = torch.tensor([3, 5])
    maps = method.attribute(model, x, targets, AttributionContext(["a", "b"]))
    expected = CaptumGuidedBackprop(model.module).attribute(x.clone().requires_grad_(True), target=targets)
    torch.testing.assert_close(maps, expected, atol=1e-6, rtol=1e-5)
