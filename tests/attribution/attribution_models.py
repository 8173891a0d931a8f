"""Tiny models and inputs for the attribution tests (seconds on two CPU cores).

Every model is wrapped into a ``ModelBundle`` the way ``load_model`` prepares one: eval mode,
parameter gradients off, ReLUs not in place. BatchNorm statistics are randomized so that
canonizers that merge BatchNorm into convolutions have something to merge.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from zennit.attribution import Gradient

from benchmark.models.bundle import ModelBundle
from benchmark.models.registry import IMAGENET_MEAN, IMAGENET_STD, ModelDef, RandomizationDefaults, model_def

NUM_CLASSES = 10


class TinyResidualCNN(nn.Module):
    """Conv-BN-ReLU, max-pool, a residual block (reusing one ReLU module), average pool, dense head."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(8)
        self.conv3 = nn.Conv2d(8, 8, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(8)
        self.relu_out = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn1(self.conv1(x))))
        branch = self.bn3(self.conv3(self.relu(self.bn2(self.conv2(x)))))
        x = self.relu_out(x + branch)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class VGGLike(nn.Module):
    """The layout of torchvision's VGG (features, avgpool, classifier) at a size that fits a test."""

    def __init__(self, num_classes: int = NUM_CLASSES, batch_norm: bool = True, bias: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for width in (8, "M", 16, "M", 16):
            if width == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(channels, width, 3, padding=1, bias=bias))
            if batch_norm:
                layers.append(nn.BatchNorm2d(width))
            layers.append(nn.ReLU())
            channels = width
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((2, 2))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 4, 32, bias=bias), nn.ReLU(), nn.Dropout(), nn.Linear(32, num_classes, bias=bias)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.BatchNorm2d):
                n = layer.num_features
                layer.running_mean.copy_(0.2 * torch.randn(n, generator=generator))
                layer.running_var.copy_(0.5 + torch.rand(n, generator=generator))
                layer.weight.copy_(0.5 + torch.rand(n, generator=generator))
                layer.bias.copy_(0.2 * torch.randn(n, generator=generator))


def make_bundle(module: nn.Module, family: str, name: str = "test-model") -> ModelBundle:
    """What ``load_model`` does to a module, without a job spec."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for layer in module.modules():
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    definition = ModelDef(name, family, lambda n, s: module, "fc", RandomizationDefaults("fc", r"\.conv1$", 1, 1))
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return ModelBundle(name, definition, module, torch.device("cpu"), "test", mean, std)


def seeded(build: Callable[[], nn.Module], seed: int = 0) -> nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = build()
    randomize_batchnorm(module, seed)
    return module


def registry_bundle(name: str, size: int = 32) -> ModelBundle:
    """One of the paper's architectures from the registry, untrained, at ``size`` px.

    Untrained means what these tests can check is the mechanics (rules, canonizers, equivalences),
    never what a trained network shows (``tests/testbed`` does that). EfficientNet-B0 in particular:
    with efficientnet_pytorch's default initialisation alone its gradients are ~1e-14 and every LRP
    map is exactly zero; the random BatchNorm statistics set here are what give it non-zero maps."""
    definition = model_def(name)
    module = seeded(lambda: definition.build(NUM_CLASSES, size))
    bundle = make_bundle(module, definition.family, name)
    return ModelBundle(name, definition, bundle.module, bundle.device, "test", bundle.mean, bundle.std)


def make_inputs(model: ModelBundle, n: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Normalized images of uniform random pixels."""
    generator = torch.Generator().manual_seed(seed)
    return model.normalize(torch.rand(n, 3, size, size, generator=generator))


def make_targets(n: int = 3) -> torch.Tensor:
    return torch.tensor([1, 7, 3, 0, 9, 5, 2, 4][:n], dtype=torch.long)


def keys(n: int = 3) -> list[str]:
    return [f"img-{i:03d}" for i in range(n)]


def tiny_densenet() -> ModelBundle:
    """torchvision's DenseNet classes (dense layers, transitions, the registry's final ReLU module)
    at a fraction of DenseNet-121's size: the same canonizer code paths, seconds less per LRP pass."""
    from benchmark.models.registry import DenseNetWithReluModule

    module = seeded(
        lambda: DenseNetWithReluModule(
            growth_rate=8, block_config=(2, 2), num_init_features=8, bn_size=2, num_classes=NUM_CLASSES
        )
    )
    return make_bundle(module, "densenet", "tiny-densenet")


def tiny_efficientnet(size: int = 32) -> ModelBundle:
    """efficientnet_pytorch's EfficientNet-B0 blocks at width 0.25 and depth 0.5 (10 MBConv blocks, 3 with
    an identity skip), built as the registry builds B0 (autograd-visible swish, static padding)."""
    from efficientnet_pytorch import EfficientNet

    def build() -> nn.Module:
        model = EfficientNet.from_name(
            "efficientnet-b0", num_classes=NUM_CLASSES, image_size=size, width_coefficient=0.25, depth_coefficient=0.5
        )
        model.set_swish(memory_efficient=False)
        return model

    return make_bundle(seeded(build), "efficientnet", "tiny-efficientnet")


def zennit_relevance(model, composite, inputs, targets, output_relevance: str = "one") -> torch.Tensor:
    """zennit's Gradient attributor; output relevance one-hot (zennit's convention, our default) or
    one-hot × logit (``output_relevance='logit'``)."""

    def seed(output: torch.Tensor) -> torch.Tensor:
        one_hot = torch.nn.functional.one_hot(targets, output.shape[1]).to(output)
        return one_hot * output.detach() if output_relevance == "logit" else one_hot

    with Gradient(model.module, composite, attr_output=seed) as attributor:
        _, relevance = attributor(inputs.clone())
    return relevance
