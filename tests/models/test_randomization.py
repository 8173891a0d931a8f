"""Randomization plans and the in-place randomizer (DESIGN §3, supplement A.1)."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys

import pytest
import torch
import torchvision

from benchmark.models import MODELS, build_plan, model_def
from benchmark.models.randomization import Randomizer, he_normal


def paper_plan(name: str, mode: str = "top_down", **overrides):
    definition = model_def(name)
    module = definition.build(1000, 64)
    rule = definition.randomization
    arguments = dict(head=rule.head, boundary=rule.boundary, every=rule.every, max_boundaries=rule.max_boundaries)
    arguments.update(overrides)
    return module, build_plan(module, mode=mode, **arguments)


def test_resnet50_stages_are_the_papers_rule() -> None:
    """fc, then each bottleneck from the top down to its '.conv1' (16 of them): 17 stages."""
    _, plan = paper_plan("resnet50")
    blocks = [("layer4", 3), ("layer3", 6), ("layer2", 4), ("layer1", 3)]
    expected = [("fc",)]
    for layer, count in blocks:
        for block in reversed(range(count)):
            group = [f"{layer}.{block}.conv3", f"{layer}.{block}.conv2", f"{layer}.{block}.conv1"]
            if block == 0:
                group.insert(0, f"{layer}.0.downsample.0")  # defined after bn3, so met first walking back
            expected.append(tuple(group))
    assert [stage.modules for stage in plan.stages] == expected
    assert len(plan.stages) == 17 and plan.boundary_matches == 16 and plan.boundaries_used == 16
    # the stem conv is below the last boundary: never randomized top-down
    assert "conv1" not in plan.modules_at(17)


def test_densenet_reaches_58_not_63() -> None:
    """Every third '.conv1' ends a stage: 3, 6, …, 57, and a final partial stage reaches the 58th,
    the first dense layer; only the stem conv stays trained."""
    _, plan = paper_plan("densenet121")
    assert plan.boundary_matches == 58
    assert plan.boundaries_used == 58
    assert len(plan.stages) == 1 + 19 + 1
    assert any("63" in note and "58" in note for note in plan.notes)
    assert any("remaining 1" in note and "boundary 58" in note for note in plan.notes)
    conv1_per_stage = [sum(m.endswith(".conv1") for m in s.modules) for s in plan.stages[1:]]
    assert conv1_per_stage == [3] * 19 + [1]
    assert plan.stages[1].modules[0] == "features.denseblock4.denselayer16.conv2"
    assert plan.stages[-1].modules == ("features.denseblock1.denselayer1.conv2", "features.denseblock1.denselayer1.conv1")
    module, _ = paper_plan("densenet121")
    weights = [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert set(weights) - set(plan.modules_at(len(plan.stages))) == {"features.conv0"}


def test_a_max_boundaries_not_a_multiple_of_every_ends_with_a_partial_stage() -> None:
    _, plan = paper_plan("resnet50", every=3, max_boundaries=7)
    assert plan.boundaries_used == 7 and len(plan.stages) == 1 + 2 + 1
    conv1_per_stage = [sum(m.endswith(".conv1") for m in s.modules) for s in plan.stages[1:]]
    assert conv1_per_stage == [3, 3, 1]
    _, exact = paper_plan("resnet50", every=3, max_boundaries=6)
    assert len(exact.stages) == 3 and not any("remaining" in note for note in exact.notes)


def test_efficientnet_has_16_depthwise_boundaries() -> None:
    _, plan = paper_plan("efficientnet-b0")
    assert plan.boundary_matches == 16 and plan.boundaries_used == 16 and len(plan.stages) == 17
    assert plan.stages[0].modules == ("_fc",)
    assert plan.stages[1].modules[0] == "_conv_head" and plan.stages[1].modules[-1] == "_blocks.15._depthwise_conv"


def test_max_boundaries_limits_stages() -> None:
    _, plan = paper_plan("resnet50", max_boundaries=2)
    assert len(plan.stages) == 3 and plan.boundaries_used == 2


def test_independent_bottom_up_split_and_explicit_layers() -> None:
    module, top = paper_plan("resnet34")
    _, independent = paper_plan("resnet34", mode="independent")
    assert [s.modules for s in independent.stages] == [s.modules for s in top.stages]
    assert not any(s.cumulative for s in independent.stages)
    assert independent.modules_at(3) == top.stages[2].modules

    _, bottom_up = paper_plan("resnet34", mode="bottom_up")
    assert bottom_up.stages[0].modules == ("conv1",)  # the stem first
    assert bottom_up.stages[-1].modules == ("fc",)
    all_weights = [n for n, m in module.named_modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert sorted(bottom_up.modules_at(len(bottom_up.stages))) == sorted(all_weights)

    vgg = model_def("vgg16").build(1000, 64)
    split = build_plan(vgg, mode="split", head="classifier.6", boundary=".", every=1, max_boundaries=None, split_after="features.12")
    assert split.stages[0].modules == ("features.14", "features.17", "features.19", "features.21", "features.24",
                                       "features.26", "features.28", "classifier.0", "classifier.3", "classifier.6")

    explicit = build_plan(module, mode="independent", head="fc", boundary="x", every=1, max_boundaries=None,
                          layers=["layer4.2.conv2"])
    assert [s.modules for s in explicit.stages] == [("layer4.2.conv2",)]
    with pytest.raises(ValueError, match="not weight layers"):
        build_plan(module, mode="independent", head="fc", boundary="x", every=1, max_boundaries=None, layers=["layer9"])


def test_unknown_head_is_a_clear_error() -> None:
    module = torchvision.models.resnet18()
    with pytest.raises(ValueError, match="randomization.head: 'classifier'"):
        build_plan(module, mode="top_down", head="classifier", boundary=r"\.conv1$", every=1, max_boundaries=None)


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_cascading_stages_contain_earlier_stages_bit_for_bit() -> None:
    module, plan = paper_plan("resnet34", max_boundaries=4)
    randomizer = Randomizer(module)
    snapshots = []
    for stage in plan.stages:
        randomizer.randomize(stage.modules, seed=3)
        snapshots.append(_state(module))
    for s in range(1, len(plan.stages)):
        for name in plan.modules_at(s):
            for suffix in ("weight", "bias"):
                key = f"{name}.{suffix}"
                if key in snapshots[s - 1]:
                    assert torch.equal(snapshots[s - 1][key], snapshots[s][key])


def test_restore_is_exact_and_batchnorm_kept_by_default() -> None:
    module, plan = paper_plan("resnet34", max_boundaries=3)
    original = _state(module)
    randomizer = Randomizer(module)
    for stage in plan.stages:
        randomizer.randomize(stage.modules, seed=0)
    changed = _state(module)
    assert not torch.equal(changed["fc.weight"], original["fc.weight"])
    assert torch.equal(changed["layer4.2.bn2.weight"], original["layer4.2.bn2.weight"])  # BN untouched
    randomizer.restore()
    for key, value in _state(module).items():
        assert torch.equal(value, original[key]), key


def test_batchnorm_reset_option() -> None:
    definition = model_def("resnet34")
    module = definition.build(1000, 64)
    torch.nn.init.uniform_(module.layer4[2].bn2.weight)
    plan = build_plan(module, mode="top_down", head="fc", boundary=r"\.conv1$", every=1, max_boundaries=1,
                      reset_batchnorm=True)
    assert "layer4.2.bn2" in plan.stages[1].modules
    Randomizer(module).randomize(plan.stages[1].modules, seed=0)
    bn = module.layer4[2].bn2
    assert torch.equal(bn.weight, torch.ones_like(bn.weight)) and torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_he_normal_statistics_and_zero_bias() -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(64, 128, 3), torch.nn.Linear(512, 256))
    Randomizer(module).randomize(["0", "1"], seed=1)
    for layer, fan_in in ((module[0], 64 * 9), (module[1], 512)):
        std = layer.weight.std().item()
        assert math.isclose(std, math.sqrt(2 / fan_in), rel_tol=0.03)
        assert abs(layer.weight.mean().item()) < 0.02 * math.sqrt(2 / fan_in) * 10
        assert torch.count_nonzero(layer.bias) == 0


def test_depthwise_fan_in_matches_torch_kaiming() -> None:
    shape = torch.Size([96, 1, 3, 3])  # depthwise: fan_in = 1 * 3 * 3
    reference = torch.empty(shape)
    torch.nn.init.kaiming_normal_(reference, mode="fan_in", nonlinearity="relu")
    assert math.isclose(he_normal(shape, 0, "w").std().item(), reference.std().item(), rel_tol=0.2)
    fan_in = torch.nn.init._calculate_fan_in_and_fan_out(reference)[0]
    assert fan_in == 9


def test_same_shape_layers_get_different_values() -> None:
    module = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Linear(8, 8))
    Randomizer(module).randomize(["0", "1"], seed=5)
    assert not torch.equal(module[0].weight, module[1].weight)


def test_values_depend_on_seed_only_through_seed_and_name() -> None:
    a = torchvision.models.resnet18()
    b = torchvision.models.resnet18()
    torch.nn.init.normal_(b.fc.weight)  # different starting weights must not matter
    Randomizer(a).randomize(["fc", "layer4.1.conv2"], seed=9)
    Randomizer(b).randomize(["layer4.1.conv2", "fc"], seed=9)  # order of application must not matter
    assert torch.equal(a.fc.weight, b.fc.weight) and torch.equal(a.layer4[1].conv2.weight, b.layer4[1].conv2.weight)
    c = torchvision.models.resnet18()
    Randomizer(c).randomize(["fc"], seed=10)
    assert not torch.equal(a.fc.weight, c.fc.weight)


DIGEST_SCRIPT = """
import hashlib, torch, torchvision
from benchmark.models.randomization import Randomizer
torch.manual_seed({torch_seed})  # the process's global RNG state must not matter
module = torchvision.models.resnet18()
Randomizer(module).randomize(["fc", "layer4.1.conv2", "layer4.1.conv1"], seed=42)
digest = hashlib.sha256()
for name in ["fc.weight", "fc.bias", "layer4.1.conv2.weight", "layer4.1.conv1.weight"]:
    digest.update(module.state_dict()[name].numpy().tobytes())
print(digest.hexdigest())
"""


def test_two_processes_produce_identical_weights() -> None:
    digests = [
        subprocess.run(
            [sys.executable, "-c", DIGEST_SCRIPT.format(torch_seed=torch_seed)],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        for torch_seed in (1, 2)
    ]
    assert digests[0] == digests[1] and len(digests[0]) == 64


def test_every_model_has_a_plan() -> None:
    for name in MODELS:
        _, plan = paper_plan(name)
        assert len(plan.stages) >= 2
