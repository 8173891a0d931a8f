"""A built model with what attribution, occlusion and randomization need next to it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

import torch
from torch import nn

from ..config.spec import JobSpec
from .registry import IMAGENET_MEAN, IMAGENET_STD, ModelDef, model_def
from .weights import WeightsUnavailable, load_into, pretrained_state_dict, state_dict_from_file


@dataclass
class ModelBundle:
    """The model in eval mode with parameter gradients off, on its device, plus its input statistics.

    Attribution is computed with respect to the *normalized* input (what the network sees);
    occlusion perturbs unnormalized pixels and normalizes them on the way in.
    """

    name: str
    definition: ModelDef
    module: nn.Module
    device: torch.device
    weights_source: str
    mean: torch.Tensor = field(repr=False)
    std: torch.Tensor = field(repr=False)

    @property
    def family(self) -> str:
        return self.definition.family

    def normalize(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unnormalized [N,3,H,W] pixels in [0,1] -> model input."""
        return (pixels - self.mean) / self.std

    def input_bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalized images of all-black and all-white pixels (the z^B rule's bounds)."""
        low = ((0.0 - self.mean) / self.std).expand_as(like).contiguous()
        high = ((1.0 - self.mean) / self.std).expand_as(like).contiguous()
        return low, high


def resolve_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"runtime.device is '{requested}' but no CUDA device is visible; use --set runtime.device=cpu")
    return device


def set_precision(precision: str, device: torch.device) -> None:
    """TF32 matmuls on GPU unless strict fp32 is asked for (recorded in the manifest)."""
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def build_module(spec: JobSpec) -> tuple[nn.Module, str]:
    """The architecture with the weights the spec asks for, on the CPU; and where they came from."""
    definition = model_def(spec.model.name)
    num_classes = spec.num_classes()
    weights = spec.model.weights
    with torch.random.fork_rng(devices=[]):
        # The library's own initialisation, made a pure function of weights_seed (also the seed of
        # a freshly initialised head when pretrained weights get a new class count).
        torch.manual_seed(spec.model.weights_seed)
        module = definition.build(num_classes, spec.dataset.crop)
    if weights == "random":
        source = f"random (library initialisation, seed {spec.model.weights_seed})"
    elif weights == "testbed":
        source = _load_testbed(module, spec)
    elif weights == "imagenet" or _looks_like_weights_name(weights):
        state, source = pretrained_state_dict(definition, weights)
        load_into(module, state, source, skip_prefix=definition.head if num_classes != 1000 else None)
        if num_classes != 1000:
            source += f" (head '{definition.head}' re-initialised for {num_classes} classes)"
    else:
        load_into(module, state_dict_from_file(weights), weights)
        source = str(weights)
    return module, source


def _load_testbed(module: nn.Module, spec: JobSpec) -> str:
    """The trained test bed (``benchmark.testbed``), trained on this machine first if it has none."""
    from ..testbed import testbed

    if spec.model.name != "tiny-resnet" or spec.num_classes() != 10:
        raise WeightsUnavailable(
            f"model.weights 'testbed' is the tiny-resnet trained on the 10 digit classes; this job has "
            f"model '{spec.model.name}' with {spec.num_classes()} classes"
        )
    bed = testbed(log=lambda line: print(line, file=sys.stderr))
    load_into(module, state_dict_from_file(str(bed.path)), str(bed.path))
    return bed.describe()


def _looks_like_weights_name(value: str) -> bool:
    return value.isupper() or value.startswith("efficientnet-")


def load_model(spec: JobSpec, device: torch.device | None = None) -> ModelBundle:
    device = device or resolve_device(spec.runtime.device)
    set_precision(spec.runtime.precision, device)
    module, source = build_module(spec)
    module.eval().to(device)
    if spec.runtime.channels_last:
        module.to(memory_format=torch.channels_last)  # conv outputs follow the weights' layout
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for layer in module.modules():
        if isinstance(layer, nn.ReLU):
            layer.inplace = False  # backward hooks (guided backprop, LRP) need the ReLU input intact
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    return ModelBundle(spec.model.name, model_def(spec.model.name), module, device, source, mean, std)


__all__ = ["ModelBundle", "WeightsUnavailable", "build_module", "load_model", "resolve_device"]
