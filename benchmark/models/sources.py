"""Models beyond the paper's five: any torchvision classification builder, any timm model, and a
user's factory (DESIGN §3).

``torchvision:<builder>`` builds with ``torchvision.models.get_model`` (``model.kwargs`` passed on)
and takes pretrained weights through torchvision's weights API: ``weights: imagenet`` is the
builder's ``DEFAULT`` weights, or name an enum member (``IMAGENET1K_V2``); the input statistics
are those of the weights' preset. ResNets and VGGs keep their family (zennit's canonizers apply);
everything else is ``generic``. ``timm:<model>`` builds with ``timm.create_model`` (the optional
extra ``[timm]``), pretrained weights through timm's own cache (``weights: imagenet`` is timm's
default tag, or name a tag such as ``a1_in1k``), input statistics and classifier from its
``pretrained_cfg``. A factory (``path/to/file.py:build`` or ``package.module:build``) is called
with ``model.kwargs`` (and ``num_classes`` when it takes one) and must return an ``nn.Module``.

Models of a source have no built-in randomization rule: the job gives one or the generic rule
applies (``benchmark.models.plan_for``).
"""

from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from torch import nn

from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelDef, register_model_source

if TYPE_CHECKING:
    from ..config.spec import ModelSpec

# torchvision builders whose modules zennit's canonizers know (family -> builder name prefixes)
TORCHVISION_FAMILIES = {"resnet": ("resnet", "resnext", "wide_resnet"), "vgg": ("vgg",)}


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=4, cutoff=0.6)
    return f"; close: {', '.join(close)}" if close else ""


@lru_cache(maxsize=1)
def torchvision_classifiers() -> tuple[str, ...]:
    import torchvision

    return tuple(torchvision.models.list_models(module=torchvision.models))


@dataclass(frozen=True)
class TorchvisionSource:
    scheme: str = "torchvision"
    placeholder: str = "torchvision:<builder>"

    def check(self, name: str) -> None:
        builders = torchvision_classifiers()
        if name not in builders:
            raise ValueError(
                f"torchvision has no classification builder '{name}'{_suggest(name, list(builders))} "
                "(torchvision.models.list_models(module=torchvision.models) lists them)"
            )

    def define(self, spec: "ModelSpec") -> ModelDef:
        builder = spec.name.partition(":")[2]
        self.check(builder)
        kwargs = dict(spec.kwargs)

        def build(num_classes: int, input_size: int) -> nn.Module:
            import torchvision

            return torchvision.models.get_model(builder, weights=None, num_classes=num_classes, **kwargs)

        family = next(
            (family for family, prefixes in TORCHVISION_FAMILIES.items() if builder.startswith(prefixes)), "generic"
        )
        mean, std = torchvision_statistics(builder, spec.weights)
        return ModelDef(
            spec.name, family, build, None, None, torchvision_builder=builder, default_weights="DEFAULT",
            source="torchvision", mean=mean, std=std,
        )


def torchvision_statistics(builder: str, weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the preset of the weights used (ImageNet's when untrained or from a file)."""
    import torchvision

    if weights is None or not (weights == "imagenet" or weights.isupper()):
        return IMAGENET_MEAN, IMAGENET_STD
    try:
        enum = torchvision.models.get_model_weights(builder)["DEFAULT" if weights == "imagenet" else weights]
        preset = enum.transforms()
        return tuple(preset.mean), tuple(preset.std)
    except (KeyError, AttributeError, TypeError, ValueError):  # unknown name: loading reports it
        return IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class TimmSource:
    scheme: str = "timm"
    placeholder: str = "timm:<model>"

    def check(self, name: str) -> None:
        try:
            import timm
        except ImportError:
            return  # validated where timm is installed: building the model says how to install it
        if not timm.is_model(name):
            raise ValueError(
                f"timm has no model '{name}'{_suggest(name, timm.list_models())} (timm.list_models() lists them)"
            )

    def define(self, spec: "ModelSpec") -> ModelDef:
        timm = require_timm()
        name = spec.name.partition(":")[2]
        self.check(name)
        kwargs = dict(spec.kwargs)

        def build(num_classes: int, input_size: int) -> nn.Module:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)

        config = timm_config(name, spec.weights)
        mean = tuple(config.get("mean") or IMAGENET_MEAN)
        std = tuple(config.get("std") or IMAGENET_STD)
        return ModelDef(spec.name, "generic", build, config.get("classifier"), None, source="timm", mean=mean, std=std)


def require_timm():
    try:
        import timm
    except ImportError:
        raise ValueError("model.name: timm models need the timm package: pip install 'benchmark[timm]'") from None
    return timm


def timm_name(name: str, weights: str | None) -> str:
    """timm's '<architecture>.<tag>' for the weights asked: 'imagenet' is the default tag."""
    if weights in (None, "imagenet", "random") or "/" in str(weights) or str(weights).endswith((".pt", ".pth")):
        return name
    return f"{name.split('.')[0]}.{weights}"


def timm_config(name: str, weights: str | None) -> dict[str, Any]:
    import timm

    config = timm.get_pretrained_cfg(timm_name(name, weights))
    return config.to_dict() if config is not None else {}


def define_factory(spec: "ModelSpec") -> ModelDef:
    """A user's factory: ``load`` it now (a missing file or function fails before any work)."""
    from ..usercode import load

    factory = load(spec.name)
    if not callable(factory):
        raise ValueError(f"model.name: '{spec.name}' is not callable")
    kwargs = dict(spec.kwargs)
    pass_classes = "num_classes" not in kwargs and _accepts(factory, "num_classes")

    def build(num_classes: int, input_size: int) -> nn.Module:
        module = factory(**kwargs, **({"num_classes": num_classes} if pass_classes else {}))
        if not isinstance(module, nn.Module):
            raise ValueError(f"model.name: {spec.name} returned {type(module).__name__}, not a torch.nn.Module")
        return module

    return ModelDef(spec.name, "generic", build, None, None, source="factory")


def _accepts(function: Any, parameter: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False
    return parameter in parameters or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())


register_model_source(TorchvisionSource())
register_model_source(TimmSource())
