"""Applying randomization stages in place on one model, and restoring it exactly.

Every randomized value is a pure function of (seed, parameter name): weights are drawn from a
CPU generator seeded by a hash of both, so every actor, shard, device and resumed run sees the
identical randomized model, two layers of equal shape get different values, and a cascading
stage s+1 contains stage s bit for bit. Randomized tensors are cached per seed, so applying a
stage costs a copy, not a draw.

Weight layers get He normal values (fan_in, ReLU gain: std = sqrt(2 / fan_in)) and zero bias.
BatchNorm, when reset, becomes weight 1, bias 0, running mean 0, running variance 1; it is
reported as a reset, never counted as a randomization of its own.
"""

from __future__ import annotations

import hashlib
import math

import torch
from torch import nn

from .plan import NORM_LAYERS, WEIGHT_LAYERS


def derive_seed(seed: int, name: str) -> int:
    """A 63-bit generator seed from (seed, tensor name), identical in every process."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def he_normal(shape: torch.Size, seed: int, name: str) -> torch.Tensor:
    """He normal (fan_in, gain sqrt 2) values for a weight of ``shape``, on the CPU, float32."""
    fan_in = shape[1] * math.prod(shape[2:]) if len(shape) > 1 else shape[0]
    generator = torch.Generator(device="cpu").manual_seed(derive_seed(seed, name))
    return torch.randn(shape, generator=generator, dtype=torch.float32) * math.sqrt(2.0 / fan_in)


def randomized_tensors(module: nn.Module, module_name: str, seed: int) -> dict[str, torch.Tensor]:
    """The replacement values of one module's tensors (CPU float32), keyed by their full names."""
    values: dict[str, torch.Tensor] = {}
    if isinstance(module, WEIGHT_LAYERS):
        values[f"{module_name}.weight"] = he_normal(module.weight.shape, seed, f"{module_name}.weight")
        if module.bias is not None:
            values[f"{module_name}.bias"] = torch.zeros(module.bias.shape)
    elif isinstance(module, NORM_LAYERS):
        if module.weight is not None:
            values[f"{module_name}.weight"] = torch.ones(module.weight.shape)
            values[f"{module_name}.bias"] = torch.zeros(module.bias.shape)
        if module.running_mean is not None:
            values[f"{module_name}.running_mean"] = torch.zeros(module.running_mean.shape)
            values[f"{module_name}.running_var"] = torch.ones(module.running_var.shape)
    else:
        raise TypeError(f"{module_name}: {type(module).__name__} is not a randomizable layer")
    return values


class Randomizer:
    """Puts randomized values into a model's tensors in place and takes them out again.

    Tensors are always looked up by name when written, because LRP canonizers swap a
    parameter's ``.data`` while they are registered.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._modules = dict(model.named_modules())
        self._original: dict[str, torch.Tensor] = {}
        self._cache: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
        self._randomized: set[str] = set()  # modules currently holding randomized values
        self.randomizations = 0  # calls of ``randomize``: one per model state put in place (``benchmark bench``)

    def _tensor(self, name: str) -> torch.Tensor:
        module_name, _, attr = name.rpartition(".")
        return getattr(self._modules[module_name], attr)

    def _values(self, module_name: str, seed: int) -> dict[str, torch.Tensor]:
        key = (seed, module_name)
        if key not in self._cache:
            like = next(iter(self._modules[module_name].parameters()))
            self._cache[key] = {
                name: value.to(device=like.device, dtype=like.dtype)
                for name, value in randomized_tensors(self._modules[module_name], module_name, seed).items()
            }
        return self._cache[key]

    @torch.no_grad()
    def randomize(self, module_names: tuple[str, ...] | list[str], seed: int) -> None:
        """Randomize these modules (others are left as they are)."""
        self.randomizations += 1
        for module_name in module_names:
            for name, value in self._values(module_name, seed).items():
                tensor = self._tensor(name)
                if name not in self._original:
                    self._original[name] = tensor.detach().clone()
                tensor.copy_(value)
            self._randomized.add(module_name)

    @torch.no_grad()
    def restore(self, module_names: tuple[str, ...] | list[str] | None = None) -> None:
        """Put the original values back (all randomized modules when none are named)."""
        names = list(self._randomized) if module_names is None else list(module_names)
        for module_name in names:
            prefix = module_name + "."
            for name, original in self._original.items():
                if name.startswith(prefix) and "." not in name[len(prefix):]:
                    self._tensor(name).copy_(original)
            self._randomized.discard(module_name)

    @property
    def randomized_modules(self) -> set[str]:
        return set(self._randomized)

    def clear_cache(self) -> None:
        self._cache.clear()
