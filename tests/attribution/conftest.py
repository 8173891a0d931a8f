"""Fixtures of the attribution tests: the tiny models of ``attribution_models``."""

from __future__ import annotations

import pytest
import torchvision

from .attribution_models import NUM_CLASSES, TinyResidualCNN, VGGLike, seeded, make_bundle
from benchmark.models.bundle import ModelBundle


@pytest.fixture
def tiny() -> ModelBundle:
    return make_bundle(seeded(TinyResidualCNN), "resnet", "tiny")


@pytest.fixture
def resnet18() -> ModelBundle:
    module = seeded(lambda: torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES))
    return make_bundle(module, "resnet", "resnet18")


@pytest.fixture
def resnet50() -> ModelBundle:
    module = seeded(lambda: torchvision.models.resnet50(weights=None, num_classes=NUM_CLASSES))
    return make_bundle(module, "resnet", "resnet50")


@pytest.fixture
def vgg_like() -> ModelBundle:
    return make_bundle(seeded(VGGLike), "vgg", "vgg-like")


@pytest.fixture
def bias_free() -> ModelBundle:
    """A ReLU network without biases or BatchNorm: LRP-0 equals gradient×input, ε conserves relevance."""
    return make_bundle(seeded(lambda: VGGLike(batch_norm=False, bias=False)), "vgg", "bias-free")
