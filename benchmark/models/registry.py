"""Every model a job can name, and what the rest of the code needs to know about each.

One ``ModelDef`` per architecture: how to build it untrained, where its pretrained weights
come from, its classifier head, its input statistics and its top-down randomization rule
(DESIGN §3). ``MODELS`` holds the paper's five and the test bed's small ResNet by name; ``MODEL_SOURCES`` the schemes that name
any other model (``torchvision:<builder>``, ``timm:<model>``; ``benchmark.models.sources``), and a
code reference (``path/to/file.py:build``, ``package.module:build``) names a user's factory.
Spec validation reads these registries: registering a ``ModelDef`` or a source is all it takes
for a job to name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

import torch
import torchvision
from torch import nn

from .tiny_resnet import tiny_resnet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

if TYPE_CHECKING:
    from ..config.spec import ModelSpec


@dataclass(frozen=True)
class RandomizationDefaults:
    """The paper's cascading rule for one model (supplement A.1)."""

    head: str
    boundary: str
    every: int
    max_boundaries: int


@dataclass(frozen=True)
class ModelDef:
    name: str
    family: str  # resnet | vgg | densenet | efficientnet | generic: selects canonizers and rules
    build: Callable[[int, int], nn.Module]  # (num_classes, input_size) -> untrained module
    head: str | None  # None: derived from the built module (its last Linear)
    randomization: RandomizationDefaults | None  # None: the generic rule (one stage per weight layer)
    torchvision_builder: str | None = None  # name in torchvision.models, for pretrained weights
    default_weights: str = "IMAGENET1K_V1"
    pretrained: bool = True  # False: no library weights exist ('imagenet' is refused)
    source: str = "builtin"  # builtin | torchvision | timm | factory
    mean: tuple[float, ...] = IMAGENET_MEAN  # input statistics the weights were trained with
    std: tuple[float, ...] = IMAGENET_STD

    @property
    def builtin(self) -> bool:
        """A registered architecture, with its own canonizers, rules and tests."""
        return self.source == "builtin"


class DenseNetWithReluModule(torchvision.models.DenseNet):
    """torchvision's DenseNet, whose final ReLU is a module instead of ``F.relu``.

    Guided backprop and LRP act through module hooks; torchvision applies the last ReLU
    functionally, where no hook can see it. The parameters and state dict are unchanged.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.final_relu = nn.ReLU(inplace=False)
        self.final_pool = nn.AdaptiveAvgPool2d((1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.final_pool(self.final_relu(self.features(x)))
        return self.classifier(torch.flatten(out, 1))


def _densenet121(num_classes: int, input_size: int) -> nn.Module:
    return DenseNetWithReluModule(
        growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, num_classes=num_classes
    )


def _efficientnet_b0(num_classes: int, input_size: int) -> nn.Module:
    from efficientnet_pytorch import EfficientNet

    model = EfficientNet.from_name("efficientnet-b0", num_classes=num_classes, image_size=input_size)
    model.set_swish(memory_efficient=False)  # autograd-visible swish, so hooks see real gradients
    return model


def _torchvision(builder: str) -> Callable[[int, int], nn.Module]:
    def build(num_classes: int, input_size: int) -> nn.Module:
        return getattr(torchvision.models, builder)(weights=None, num_classes=num_classes)

    return build


_CONV1 = r"\.conv1$"

MODELS: dict[str, ModelDef] = {
    "resnet50": ModelDef(
        "resnet50", "resnet", _torchvision("resnet50"), "fc",
        RandomizationDefaults("fc", _CONV1, every=1, max_boundaries=16), torchvision_builder="resnet50",
    ),
    "resnet34": ModelDef(
        "resnet34", "resnet", _torchvision("resnet34"), "fc",
        RandomizationDefaults("fc", _CONV1, every=1, max_boundaries=16), torchvision_builder="resnet34",
    ),
    "vgg16": ModelDef(
        "vgg16", "vgg", _torchvision("vgg16"), "classifier.6",
        # Not in the paper's cascading experiments: one stage per weight layer, top to bottom.
        RandomizationDefaults("classifier.6", r"^(features|classifier)\.\d+$", every=1, max_boundaries=15),
        torchvision_builder="vgg16",
    ),
    "densenet121": ModelDef(
        "densenet121", "densenet", _densenet121, "classifier",
        # The paper asks for 63 '.conv1' layers; DenseNet-121 has 58, so the plan stops at the last one.
        RandomizationDefaults("classifier", _CONV1, every=3, max_boundaries=63), torchvision_builder="densenet121",
    ),
    "efficientnet-b0": ModelDef(
        "efficientnet-b0", "efficientnet", _efficientnet_b0, "_fc",
        # The paper says 17 '._depthwise_conv' layers; EfficientNet-B0 has 16.
        RandomizationDefaults("_fc", r"\._depthwise_conv$", every=1, max_boundaries=17),
        default_weights="efficientnet-b0",
    ),
    "tiny-resnet": ModelDef(
        "tiny-resnet", "resnet", tiny_resnet, "fc",
        # The paper's ResNet rule: fc, then down to each block's '.conv1' (6 blocks): 7 stages.
        RandomizationDefaults("fc", _CONV1, every=1, max_boundaries=6),
        default_weights="testbed", pretrained=False,
    ),
}


class ModelSource(Protocol):
    """A scheme naming models of a library: ``<scheme>:<name>``."""

    scheme: str
    placeholder: str  # how the error lists it, e.g. 'torchvision:<builder>'

    def check(self, name: str) -> None:
        """Raise ``ValueError`` when ``name`` cannot be one of this source's models (cheap: no weights)."""

    def define(self, spec: "ModelSpec") -> ModelDef:
        """The model the spec names (its ``name`` is '<scheme>:<name>')."""


MODEL_SOURCES: dict[str, ModelSource] = {}
FACTORY_PLACEHOLDERS = ("<file.py>:<function>", "<package.module>:<function>")


def register_model_source(source: ModelSource) -> ModelSource:
    MODEL_SOURCES[source.scheme] = source
    return source


def allowed_model_names() -> str:
    """The names a job may use, as an error message lists them."""
    named = [f"'{name}'" for name in MODELS]
    patterns = [f"'{source.placeholder}'" for source in MODEL_SOURCES.values()]
    patterns += [f"'{placeholder}'" for placeholder in FACTORY_PLACEHOLDERS]
    return f"{', '.join(named[:-1])} or {named[-1]}, or {', '.join(patterns[:-1])} or {patterns[-1]}"


def check_model_name(name: str) -> None:
    """Spec validation of ``model.name`` against the registries; ``ValueError`` names what is allowed."""
    from ..usercode import parse_ref

    if name in MODELS:
        return
    scheme, sep, rest = name.partition(":")
    if sep and scheme in MODEL_SOURCES:
        MODEL_SOURCES[scheme].check(rest)
        return
    if parse_ref(name) is not None:
        return
    raise ValueError(f"Input should be {allowed_model_names()}")


def is_factory_name(name: str) -> bool:
    """A code reference to a user's factory (not a registered model or a source's scheme)."""
    from ..usercode import parse_ref

    scheme, sep, _ = name.partition(":")
    return name not in MODELS and not (sep and scheme in MODEL_SOURCES) and parse_ref(name) is not None


def model_def(name: str) -> ModelDef:
    """One of the registered architectures (``MODELS``) by name."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model '{name}'; allowed: {', '.join(MODELS)}") from None


def define_model(spec: "ModelSpec") -> ModelDef:
    """The model a job's ``model`` section names: registered, from a source, or a user's factory."""
    if spec.name in MODELS:
        return MODELS[spec.name]
    scheme, sep, _ = spec.name.partition(":")
    if sep and scheme in MODEL_SOURCES:
        return MODEL_SOURCES[scheme].define(spec)
    from .sources import define_factory

    return define_factory(spec)


from . import sources  # noqa: E402,F401  (registers the torchvision and timm sources)
