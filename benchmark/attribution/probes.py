"""What a model we do not know allows, found by running it once at build time.

Guided backprop and LRP act through module hooks: whatever a model computes outside its modules
(``torch.nn.functional.relu``, a residual ``x + f(x)``, a product, attention's matrix products)
gets the plain gradient. On the paper's five architectures our canonizers and tests take care of
that; on any other model two probes decide before any work:

- ``functional_activations``: a forward pass that lists activation functions called outside
  activation modules, which guided backprop's rule cannot reach (it would silently be the gradient
  there).
- ``conservation_probe``: LRP's conservation on a probe batch. With zennit's rules (ε at every
  Conv/Linear with biases left out and a stabilizer relative to the activations, so that nothing
  absorbs relevance; the model family's canonizers, zennit's BatchNorm merging for a generic
  model, which must leave the outputs unchanged), the input relevance of each image must sum to
  the relevance put on its target logit, every module must pass on what reaches it, and nothing
  may change between modules. A failure names the module types that break conservation
  (LayerNorm, attention, …) and says when the break lies between modules (functional operations:
  residual sums, products). Run in float64 on a copy of the model.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from zennit.canonizers import Canonizer
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon
from zennit.types import Linear

from ..models.bundle import ModelBundle

PROBE_IMAGES = 2
CONSERVATION_TOLERANCE = 0.01  # allowed relative deviation of Σ input relevance from the output relevance
MODULE_TOLERANCE = 1e-3  # a module's own imbalance, relative to the output relevance, that counts as a break

CANONIZER_TOLERANCE = 1e-3  # largest change of the logits by the canonizers, relative to the largest logit

# Activation functions guided backprop's rule must see as modules (name -> the callables that compute it).
ACTIVATION_FUNCTIONS: dict[Callable, str] = {
    F.relu: "relu", F.relu_: "relu_", torch.relu: "relu", torch.relu_: "relu_", Tensor.relu: "Tensor.relu",
    Tensor.relu_: "Tensor.relu_", F.relu6: "relu6", F.leaky_relu: "leaky_relu", F.elu: "elu", F.gelu: "gelu",
    F.silu: "silu", F.hardswish: "hardswish", F.mish: "mish", F.selu: "selu", F.celu: "celu",
    F.softplus: "softplus", F.hardtanh: "hardtanh",
}


def probe_batch(model: ModelBundle, images: int = PROBE_IMAGES, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalized images of uniform random pixels, the same on every worker."""
    generator = torch.Generator().manual_seed(0)
    pixels = torch.rand(images, model.mean.shape[1], model.input_size, model.input_size, generator=generator)
    return model.normalize(pixels.to(model.device)).to(dtype)


class _ModuleStack:
    """Forward hooks keeping the stack of modules running now (names) and how deep in activation modules."""

    def __init__(self, module: nn.Module, activations: tuple[type, ...]) -> None:
        self.stack: list[str] = []
        self.in_activation = 0
        self.handles = []
        for name, child in module.named_modules():
            is_activation = isinstance(child, activations)
            self.handles.append(child.register_forward_pre_hook(self._enter(name, is_activation)))
            self.handles.append(child.register_forward_hook(self._leave(is_activation)))

    def _enter(self, name: str, is_activation: bool):
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append(name)
            self.in_activation += is_activation

        return hook

    def _leave(self, is_activation: bool):
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            self.stack.pop()
            self.in_activation -= is_activation

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


class _ActivationCalls(TorchFunctionMode):
    def __init__(self, modules: _ModuleStack) -> None:
        super().__init__()
        self.modules = modules
        self.calls: dict[tuple[str, str], int] = defaultdict(int)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        name = ACTIVATION_FUNCTIONS.get(func)
        if name is not None and not self.modules.in_activation:
            where = self.modules.stack[-1] if self.modules.stack else "(model)"
            self.calls[(name, where or "(model)")] += 1
        return func(*args, **(kwargs or {}))


def functional_activations(model: ModelBundle, activations: tuple[type, ...]) -> list[dict[str, Any]]:
    """Activation functions the model calls outside ``activations`` modules: [{function, module, calls}]."""
    cached = model.probes.get("functional_activations")
    if cached is not None:
        return cached["calls"]
    stack = _ModuleStack(model.module, activations)
    mode = _ActivationCalls(stack)
    try:
        with torch.no_grad(), mode:
            model.module(probe_batch(model, images=1))
    finally:
        stack.remove()
    calls = [{"function": f, "module": m, "calls": n} for (f, m), n in sorted(mode.calls.items(), key=lambda i: i[0][1])]
    model.probes["functional_activations"] = {"calls": calls}
    return calls


def describe_calls(calls: list[dict[str, Any]], limit: int = 4) -> str:
    listed = [f"{c['function']} in '{c['module']}'" + (f" ({c['calls']} calls)" if c["calls"] > 1 else "") for c in calls]
    return ", ".join(listed[:limit]) + (f", … ({len(listed)} places)" if len(listed) > limit else "")


# -- LRP conservation -------------------------------------------------------------------------------
@dataclass
class ConservationReport:
    passed: bool
    input_relevance: list[float]  # Σ input relevance per probe image (relevance 1 on its target logit)
    breaking: dict[str, list[str]] = field(default_factory=dict)  # module type -> modules that do not conserve
    between_modules: float = 0.0  # relevance created or lost outside any module, relative to the output
    error: str | None = None  # the probe could not run (a hook failed on a module)

    def describe(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "input_relevance": [round(v, 6) for v in self.input_relevance],
            "output_relevance": 1.0,
            "breaking_modules": {kind: len(names) for kind, names in self.breaking.items()},
            "between_modules": round(self.between_modules, 6),
            **({"error": self.error} if self.error else {}),
        }

    def explain(self) -> str:
        if self.error:
            found = f"the probe failed: {self.error}"
        else:
            sums = ", ".join(f"{v:.4g}" for v in self.input_relevance)
            found = (
                f"the input relevance sums to {sums} for a relevance of 1 on the target logit "
                f"({len(self.input_relevance)} probe images; allowed deviation {CONSERVATION_TOLERANCE:.0%})"
            )
        parts = []
        if self.breaking:
            kinds = "; ".join(
                f"{kind} ({len(names)}: {', '.join(names[:3])}{', …' if len(names) > 3 else ''})"
                for kind, names in self.breaking.items()
            )
            parts.append(f"modules that do not conserve relevance: {kinds}")
        if abs(self.between_modules) > CONSERVATION_TOLERANCE or (not self.breaking and not self.error):
            parts.append(
                "relevance also changes between modules, in functional operations no hook can see (a residual "
                "x + f(x), products, attention's matrix products, torch.nn.functional calls)"
            )
        return found + (": " + "; ".join(parts) if parts else "")


class _CanonizerChangedModel(RuntimeError):
    pass


class _Tap(torch.autograd.Function):
    """Identity whose backward reports the sum of the gradient (relevance) passing through it."""

    @staticmethod
    def forward(ctx, x: Tensor, record: Callable[[Tensor], None]) -> Tensor:  # type: ignore[override]
        ctx.record = record
        return x.clone()  # not a view: the model may modify it in place

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ctx.record(grad)
        return grad, None


class _Balance:
    """Per leaf module: relevance arriving at its outputs and leaving through its inputs."""

    def __init__(self) -> None:
        self.above: dict[str, float] = defaultdict(float)
        self.above_magnitude: dict[str, float] = defaultdict(float)  # Σ|relevance| arriving: the scale of a change
        self.below: dict[str, float] = defaultdict(float)
        self.types: dict[str, str] = {}
        self.handles = []

    def watch(self, root: nn.Module) -> None:
        for name, module in root.named_modules():
            if name and not list(module.children()):
                self.types[name] = type(module).__name__
                self.handles.append(module.register_forward_pre_hook(self._tap_inputs(name), prepend=True))
                self.handles.append(module.register_forward_hook(self._tap_output(name)))

    def _add(self, table: dict[str, float], name: str) -> Callable[[Tensor], None]:
        def record(grad: Tensor) -> None:
            table[name] += float(grad.sum())
            if table is self.above:
                self.above_magnitude[name] += float(grad.abs().sum())

        return record

    def _tap_inputs(self, name: str):
        def hook(module: nn.Module, args: tuple) -> tuple:
            return tuple(
                _Tap.apply(a, self._add(self.below, name)) if isinstance(a, Tensor) and a.requires_grad else a for a in args
            )

        return hook

    def _tap_output(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> Any:
            if isinstance(output, Tensor) and output.requires_grad:
                return _Tap.apply(output, self._add(self.above, name))
            if isinstance(output, tuple) and output and isinstance(output[0], Tensor) and output[0].requires_grad:
                return (_Tap.apply(output[0], self._add(self.above, name)), *output[1:])
            return output

        return hook

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def relative_stabilizer(z: Tensor) -> Tensor:
    """z + sign(z)·1e-9·rms(z) per image: a stabilizer that absorbs no relevance at any activation scale
    (an untrained deep network's activations can be 1e-60 small, where a fixed ε would absorb everything)."""
    scale = z.flatten(1).pow(2).mean(1).sqrt().view(-1, *([1] * (z.ndim - 1)))
    sign = (z == 0).to(z) + z.sign()
    return z + sign * (1e-9 * scale + 1e-200)


def probe_composite(canonizers: list[Canonizer]) -> LayerMapComposite:
    """zennit's base map with ε at every Conv/Linear, biases left out and a relative stabilizer: every
    rule conserves (up to 1e-9), so a deviation comes from what no rule handles."""
    from .lrp import base_layer_map

    rule = Epsilon(epsilon=relative_stabilizer, zero_params="bias")
    return LayerMapComposite(base_layer_map(relative_stabilizer) + [(Linear, rule)], canonizers=canonizers)


def conservation_probe(model: ModelBundle, canonizers: list[Canonizer]) -> ConservationReport:
    """LRP's conservation on ``PROBE_IMAGES`` probe images (see the module docstring); cached per model."""
    cached = model.probes.get("lrp_conservation_report")
    if cached is not None:
        return cached
    module = copy.deepcopy(model.module).to(torch.float64)
    inputs = probe_batch(model, dtype=torch.float64)
    balance = _Balance()
    try:
        with torch.no_grad():
            original = module(inputs)
        with ExitStack() as stack:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.enable_grad())
            stack.enter_context(probe_composite(canonizers).context(module))
            balance.watch(module)
            x = inputs.clone().requires_grad_(True)
            logits = module(x)
            # zennit's merged BatchNorm keeps its eps (x / sqrt(1 + eps)): a relative change of ~5e-6 per layer
            if float((logits.detach() - original).abs().max()) > CANONIZER_TOLERANCE * float(original.abs().max()):
                raise _CanonizerChangedModel(
                    f"the canonizers ({', '.join(type(c).__name__ for c in canonizers)}) change the model's outputs "
                    f"(largest logit difference {float((logits.detach() - original).abs().max()):.3g}): a BatchNorm "
                    "is merged into a layer it does not follow in the forward pass (definition order differs from "
                    "the data flow, as in DenseNet's pre-activation blocks)"
                )
            seed = F.one_hot(logits.argmax(1), logits.shape[1]).to(logits.dtype)
            (relevance,) = torch.autograd.grad(logits, x, grad_outputs=seed)
    except _CanonizerChangedModel as error:
        report = ConservationReport(False, [], error=str(error))
    except Exception as error:  # a rule that cannot handle a module (tuple outputs, several inputs, …)
        report = ConservationReport(False, [], error=f"{type(error).__name__}: {error}")
        report.breaking = _unruled_types(model.module)
    else:
        sums = relevance.flatten(1).sum(1).tolist()
        total = float(len(sums))
        breaking: dict[str, list[str]] = defaultdict(list)
        module_change = 0.0
        for name, kind in balance.types.items():
            change = balance.below.get(name, 0.0) - balance.above.get(name, 0.0)
            if name in balance.above or name in balance.below:
                module_change += change
                if abs(change) > MODULE_TOLERANCE * max(total, balance.above_magnitude.get(name, 0.0)):
                    breaking[kind].append(name)
        between = ((sum(sums) - total) - module_change) / total
        # every image conserves, and no module or functional operation creates or destroys relevance
        # (two breaks can cancel on an untrained network: a zero-initialised residual branch)
        passed = (
            all(abs(value - 1.0) <= CONSERVATION_TOLERANCE for value in sums)
            and not breaking
            and abs(between) <= CONSERVATION_TOLERANCE
        )
        report = ConservationReport(passed, sums, dict(breaking), between)
    finally:
        balance.remove()
        del module
    model.probes["lrp_conservation_report"] = report
    model.probes["lrp_conservation"] = report.describe()
    return report


def _unruled_types(root: nn.Module) -> dict[str, list[str]]:
    """Leaf module types no composite of ours has a rule for (when the probe itself could not run)."""
    from zennit.types import Activation, AvgPool, BatchNorm, MaxPool

    known = (Linear, Activation, AvgPool, BatchNorm, MaxPool, nn.Flatten, nn.Dropout, nn.Identity)
    found: dict[str, list[str]] = defaultdict(list)
    for name, module in root.named_modules():
        leaf = not list(module.children())
        # zennit files MultiheadAttention under activations; its Pass rule cannot handle three inputs
        if name and ((leaf and not isinstance(module, known)) or isinstance(module, nn.MultiheadAttention)):
            found[type(module).__name__].append(name)
    return dict(found)


__all__ = [
    "ACTIVATION_FUNCTIONS", "ConservationReport", "conservation_probe", "describe_calls", "functional_activations",
    "probe_batch",
]
