"""A built model with what attribution, occlusion and randomization need next to it."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config.spec import JobSpec
from .folding import FoldedForward
from .randomization.plan import classifier_head
from .registry import ModelDef, define_model
from .tuning import fallback_settings
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
    input_size: int = 224  # side of the model's (square) input: what build-time probes feed it
    probes: dict[str, Any] = field(default_factory=dict, repr=False)  # results of build-time probes, by name
    fold_batchnorm: bool = False  # forward-only passes through a copy with BatchNorms folded (``models.folding``)
    _folded: FoldedForward | None = field(default=None, repr=False, compare=False)

    @property
    def family(self) -> str:
        return self.definition.family

    def describe(self, model_id: str) -> dict[str, Any]:
        """What the manifest records: where the model came from, its family, input statistics and the
        results of its build-time probes (a model other than the paper's five)."""
        return {
            "name": self.name,
            "id": model_id,
            "source": self.definition.source,
            "family": self.family,
            "mean": [round(float(v), 6) for v in self.mean.flatten()],
            "std": [round(float(v), 6) for v in self.std.flatten()],
            "parameters": int(sum(p.numel() for p in self.module.parameters())),
            "probes": {name: probe for name, probe in self.probes.items() if isinstance(probe, dict)},
        }

    def forward_only(self, inputs: torch.Tensor) -> torch.Tensor:
        """Logits of normalized ``inputs`` with no gradient: through the folded copy where the run folds
        BatchNorms, else the model. The model's forward pre-hooks see the call either way (a call of the
        model: pass accounting, a user's hooks)."""
        if not self.fold_batchnorm:
            with torch.no_grad():
                return self.module(inputs)
        args = (inputs,)
        for hook in tuple(self.module._forward_pre_hooks.values()):
            changed = hook(self.module, args)
            if changed is not None:
                args = changed if isinstance(changed, tuple) else (changed,)
        if self._folded is None or self._folded.module is not self.module:
            self._folded = FoldedForward(self.module)
        return self._folded(*args)

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
    """TF32 matmuls on GPU for 'tf32', strict fp32 otherwise (the run's choice is recorded in the manifest)."""
    allow = precision == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = allow
    torch.backends.cudnn.allow_tf32 = allow


def build_module(spec: JobSpec, definition: ModelDef | None = None) -> tuple[nn.Module, str]:
    """The architecture with the weights the spec asks for, on the CPU; and where they came from."""
    definition = definition or define_model(spec.model)
    num_classes = spec.num_classes()
    weights = spec.model.weights
    with torch.random.fork_rng(devices=[]):
        # The library's own initialisation, made a pure function of weights_seed (also the seed of
        # a freshly initialised head when pretrained weights get a new class count).
        torch.manual_seed(spec.model.weights_seed)
        try:
            module = definition.build(num_classes, spec.dataset.crop)
        except ValueError:
            raise
        except Exception as error:  # a builder or factory refusing its arguments: the job's to fix
            kwargs = f" with model.kwargs {spec.model.kwargs}" if spec.model.kwargs else ""
            raise ValueError(
                f"model.name: building {spec.model.name}{kwargs} failed: {type(error).__name__}: {error}"
            ) from error
    kind = weights_kind(definition, weights)
    if kind == "random":
        what = "factory's own" if definition.source == "factory" else "library"
        source = f"random ({what} initialisation, seed {spec.model.weights_seed})"
    elif kind == "testbed":
        source = _load_testbed(module, spec)
    elif kind == "pretrained":
        state, source = pretrained_state_dict(definition, weights)
        head = definition.head or classifier_head(module)
        new_head = _head_rows(state, head) not in (None, num_classes)
        load_into(module, state, source, skip_prefix=head if new_head else None)
        if new_head:
            source += f" (head '{head}' re-initialised for {num_classes} classes)"
    else:
        load_into(module, state_dict_from_file(weights), weights)
        source = str(weights)
    return module, source


def weights_kind(definition: ModelDef, weights: str) -> str:
    """'random', 'testbed', 'pretrained' (a library's weights by name) or 'file'."""
    if weights in ("random", "testbed"):
        return weights
    if definition.source == "timm":
        looks_like_path = "/" in weights or Path(weights).suffix in (".pt", ".pth", ".bin", ".safetensors")
        return "file" if looks_like_path or Path(weights).is_file() else "pretrained"
    if definition.source != "factory" and (weights == "imagenet" or _looks_like_weights_name(weights)):
        return "pretrained"
    return "file"


def _head_rows(state: dict[str, torch.Tensor], head: str) -> int | None:
    weight = state.get(f"{head}.weight")
    return None if weight is None else int(weight.shape[0])


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


def check_output(module: nn.Module, spec: JobSpec, device: torch.device) -> None:
    """A model of a source or a factory must map [N,3,crop,crop] images to [N, num_classes] logits."""
    size = spec.dataset.crop
    try:
        with torch.no_grad():
            output = module(torch.zeros(1, 3, size, size, device=device))
    except Exception as error:
        raise ValueError(
            f"model.name: {spec.model.name} fails on a 1×3×{size}×{size} input ({type(error).__name__}: {error}); "
            "check dataset.crop and model.kwargs"
        ) from None
    expected = spec.num_classes()
    if not isinstance(output, torch.Tensor) or output.shape != (1, expected):
        got = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
        raise ValueError(
            f"model.name: {spec.model.name} returns {got} for one image; the job expects logits of shape (1, {expected}): "
            "set model.num_classes to the model's output size (and use a dataset whose labels fit)"
        )


def load_model(spec: JobSpec, device: torch.device | None = None) -> ModelBundle:
    device = device or resolve_device(spec.runtime.device)
    settings = fallback_settings(spec.runtime, device.type)  # a run's workers get a spec with every value resolved
    set_precision(settings.precision, device)
    definition = define_model(spec.model)
    module, source = build_module(spec, definition)
    module.eval().to(device)
    if settings.channels_last:
        module.to(memory_format=torch.channels_last)  # conv outputs follow the weights' layout
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    for layer in module.modules():
        if getattr(layer, "inplace", None) is True:
            layer.inplace = False  # backward hooks (guided backprop, LRP) need activation inputs intact
    if not definition.builtin:
        check_output(module, spec, device)
    mean_values = spec.model.mean or definition.mean
    std_values = spec.model.std or definition.std
    channels = len(mean_values)
    mean = torch.tensor(mean_values, device=device, dtype=torch.float32).view(1, channels, 1, 1)
    std = torch.tensor(std_values, device=device, dtype=torch.float32).view(1, channels, 1, 1)
    return ModelBundle(spec.model.name, definition, module, device, source, mean, std, input_size=spec.dataset.crop,
                       fold_batchnorm=settings.fold_batchnorm)


__all__ = ["ModelBundle", "WeightsUnavailable", "build_module", "load_model", "resolve_device"]
