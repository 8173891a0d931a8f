"""zennit's LRP rules attached without zennit's hook overhead: the same relevance, fewer passes.

zennit attaches a rule to a module as hooks around it: autograd first computes the module's
ordinary input gradient, then a hook throws that gradient away and returns the rule's relevance,
which it computes by running the module again with modified parameters (twice for z⁺, four
times for γ and αβ), with a backward pass for each. ``lean`` keeps zennit's composites,
canonizers and rule objects, and changes only how a rule is attached: the module's forward runs
inside one autograd node (``RuleNode``) whose backward *is* the rule, so

- the ordinary input gradient is never computed (and the ordinary graph never built), and
- a modified pass whose input is all zeros — z⁺, γ and αβ split the input into its positive and
  negative parts, and every convolution after a ReLU has no negative part — is not run: a
  convolution or dense layer of zeros outputs its (modified) bias, and a zero input receives zero
  relevance.

On a ResNet that is 3 convolution-sized passes per layer for z⁺ where zennit makes 6, and 5
instead of 10 for γ and αβ. The arithmetic that remains is zennit's own (its modifiers, gradient
mappers and reducers), so the relevance is equal to zennit's (``tests/attribution/test_lean_rules.py``
compares every composite on every model family with zennit's hooks).

A hook of another kind is attached lean where it says how (``lean_supports(module)`` and
``lean_backward(module, inputs, relevance)``: guided backprop's clamped gradient at ReLUs). Rules
of other kinds, and modules with children or called with keyword arguments, stay attached the
zennit way; both kinds of attachment mix in one composite. While attached, the modules'
``inplace`` flags are off (an in-place activation would overwrite a tensor a rule still needs;
zennit clones every input instead).

A rule node made while ``attribution.reuse`` records the trained bottom (``memoizing()``) keeps the
modified passes of its first backward: they depend only on the node's input and the module's trained
parameters, which are the same at every replay, so each later replay runs only the gradient of those
passes (one convolution-sized pass per layer for z⁺ instead of two) — the same numbers, bit for bit.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch
from torch import Tensor, nn
from zennit.core import BasicHook, Composite, Hook, ParamMod, RemovableHandle, RemovableHandleList, zero_wrap
from zennit.rules import Pass

from .rules import HeldGatePass, SquaredPooling

# Hooks whose backward needs only the module's stored input and the relevance at its output
# (never the ordinary gradient): these can be attached lean.
PLAIN_BACKWARD_HOOKS = (Pass, HeldGatePass, SquaredPooling)
AFFINE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Children a module may have and still be attached lean: no rule is ever put on them (efficientnet_pytorch's
# same-padding convolutions hold their padding as a child module).
PASSIVE_CHILDREN = (nn.Identity, nn.ZeroPad2d, nn.ConstantPad2d)
# Set while a pass is recorded for replay: its rule nodes keep their modified passes (``memoizing``).
MEMOIZE: ContextVar[bool] = ContextVar("memoize_modified_passes", default=False)


@contextmanager
def memoizing() -> Iterator[None]:
    """Rule nodes made meanwhile keep the modified passes of their first backward for every later one:
    for a graph whose backward runs again on the same inputs and parameters (a recorded bottom)."""
    token = MEMOIZE.set(True)
    try:
        yield
    finally:
        MEMOIZE.reset(token)


class RuleNode(torch.autograd.Function):
    """The module's forward, and as its backward the rule's relevance for each input."""

    @staticmethod
    def forward(ctx: Any, attached: "LeanRule", *inputs: Tensor) -> Tensor:
        output = attached.original_forward(*inputs)  # runs without autograd: no ordinary graph
        ctx.attached, ctx.output_shape = attached, output.shape
        ctx.memo = {} if MEMOIZE.get() else None
        ctx.save_for_backward(*inputs)
        return output

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor | None, ...]:
        inputs = ctx.saved_tensors
        return (None, *ctx.attached.relevance(inputs, relevance, ctx.output_shape, ctx.memo))


class LeanRule:
    """A zennit rule attached as a ``RuleNode`` around its module's forward (see the module docstring).

    Stands in for the rule template in a composite's module map: zennit calls ``copy`` and
    ``register`` on it like on any hook.
    """

    def __init__(self, rule: Hook) -> None:
        self.rule = rule
        self.lean = False  # attached lean (else zennit's attachment stands in)
        self.module: nn.Module | None = None
        self.original_forward: Callable[..., Tensor] | None = None

    @property
    def active(self) -> bool:  # zennit's Composite.inactive() switches this
        return self.rule.active

    @active.setter
    def active(self, value: bool) -> None:
        self.rule.active = value

    @staticmethod
    def attachable(rule: Hook) -> bool:
        return isinstance(rule, BasicHook) or isinstance(rule, PLAIN_BACKWARD_HOOKS) or hasattr(rule, "lean_backward")

    def copy(self) -> "LeanRule":
        return LeanRule(self.rule.copy())

    def register(self, module: nn.Module) -> RemovableHandleList:
        own = hasattr(self.rule, "lean_backward")
        active_children = any(not isinstance(child, PASSIVE_CHILDREN) for child in module.modules() if child is not module)
        if active_children or (own and not self.rule.lean_supports(module)):
            # children's rules would run inside this node, unhooked; a hook's own lean backward is per module type
            return RemovableHandleList([self.rule.register(module), _Callback(lambda: self)])  # keeps self alive
        self.module, self.lean = module, True
        had_forward = "forward" in module.__dict__
        previous_forward = module.__dict__.get("forward")
        self.original_forward = module.forward  # a canonizer's replacement forward included
        inplace = getattr(module, "inplace", None)

        def forward(*args: Any, **kwargs: Any) -> Any:
            tensors = all(isinstance(arg, Tensor) for arg in args)
            if (kwargs or not args or not tensors or not self.active or not torch.is_grad_enabled()
                    or not any(arg.requires_grad for arg in args)):
                return self.original_forward(*args, **kwargs)
            return RuleNode.apply(self, *args)

        module.forward = forward
        if inplace is True:
            module.inplace = False

        def restore() -> None:
            if module.__dict__.get("forward") is forward:  # else a canonizer's removal already restored it
                if had_forward:
                    module.forward = previous_forward
                else:
                    del module.forward
            if inplace is True:
                module.inplace = True

        return RemovableHandleList([RemovableHandle(self), _Callback(restore)])

    def remove(self) -> None:  # what RemovableHandle(self) calls
        self.rule.stored_tensors.clear()

    # -- the relevance ------------------------------------------------------------------------------------
    def relevance(self, inputs: tuple[Tensor, ...], relevance: Tensor, output_shape: torch.Size,
                  memo: dict | None = None) -> tuple:
        """``memo``: where a node that is backpropagated again keeps its modified passes (None: not kept)."""
        if hasattr(self.rule, "lean_backward"):
            return tuple(self.rule.lean_backward(self.module, inputs, relevance))
        if isinstance(self.rule, BasicHook):
            passes = memo.get("passes") if memo is not None else None
            if passes is None:
                passes = modified_passes(self.rule, self.module, self.original_forward, inputs, output_shape,
                                         alias=memo is not None)
                if memo is not None:
                    memo["passes"] = passes
            return basic_relevance(self.rule, passes, inputs, relevance, keep=memo is not None)
        self.rule.stored_tensors["input"] = inputs
        try:
            result = self.rule.backward(self.module, inputs, (relevance,))
        finally:
            self.rule.stored_tensors.pop("input", None)
        result = tuple(result) + (None,) * (len(inputs) - len(result))
        return tuple(r if r is not None and inputs[i].requires_grad else None for i, r in enumerate(result))


class _Callback:
    """A handle whose ``remove`` calls a function once."""

    def __init__(self, function: Callable[[], None]) -> None:
        self.function: Callable[[], None] | None = function

    def remove(self) -> None:
        if self.function is not None:
            self.function()
            self.function = None


def bias_of_zeros(param_mod: ParamMod, module: nn.Module, output_shape: torch.Size, like: Tensor) -> Tensor:
    """What a dense or convolution layer with ``param_mod``'s parameters outputs for an all-zero input:
    its modified bias at every position (only the bias is modified: the weights do not matter)."""
    bias = getattr(module, "bias", None)
    keys = param_mod.param_keys
    if bias is not None and (keys is None or "bias" in keys):
        bias = zero_wrap(param_mod.zero_params)(param_mod.modifier)(bias.detach(), "bias")
    if bias is None:
        return torch.zeros(output_shape, dtype=like.dtype, device=like.device)
    return bias.reshape((1, -1) + (1,) * (len(output_shape) - 2)).expand(output_shape)


@dataclass(frozen=True)
class ModifiedPasses:
    """What a rule's backward needs besides the relevance: per (input, parameter, output) modifier the
    modified input and the module's output on it with modified parameters (``live``: those run, with
    their graph; the others had an all-zero input)."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    live: list[int]


def modified_passes(
    rule: BasicHook,
    module: nn.Module,
    forward: Callable[..., Tensor],
    inputs: tuple[Tensor, ...],
    output_shape: torch.Size,
    alias: bool = False,
) -> ModifiedPasses:
    """The modified passes of ``BasicHook.backward`` of zennit, minus those whose input is all zeros
    (dense and conv layers: their output is the modified bias; the zero input is kept as a stride-0
    tensor). ``forward`` is the module's own, not the lean wrapper around it. ``alias``: a modified input
    equal to the input shares its memory (for passes that are kept)."""
    original = inputs[0].detach()
    skip_zeros = isinstance(module, AFFINE)
    modified_inputs: list[Tensor] = []
    outputs: list[Tensor] = []
    live: list[int] = []
    for index, (in_mod, param_mod, out_mod) in enumerate(
        zip(rule.input_modifiers, rule.param_modifiers, rule.output_modifiers)
    ):
        value = in_mod(original)
        param_mod = ParamMod.ensure(param_mod)
        if skip_zeros and not bool(value.any()):
            outputs.append(out_mod(bias_of_zeros(param_mod, module, output_shape, value)))
            value = torch.zeros((), dtype=value.dtype, device=value.device).expand(value.shape)
        else:
            if alias and torch.equal(value, original):
                value = original
            value = value.detach().requires_grad_()
            with param_mod(module), torch.enable_grad():
                outputs.append(out_mod(forward(value)))
            live.append(index)
        modified_inputs.append(value)
    return ModifiedPasses(modified_inputs, outputs, live)


def basic_relevance(
    rule: BasicHook, passes: ModifiedPasses, inputs: tuple[Tensor, ...], relevance: Tensor, keep: bool = False
) -> tuple[Tensor | None, ...]:
    """``BasicHook.backward`` of zennit on its modified passes: the relevance mapped onto their outputs,
    one gradient for the inputs that are not all zero, and zennit's reducer over all of them (a zero
    input's gradient is zero). ``keep``: the passes' graph stays for the next backward."""
    modified_inputs, outputs, live = passes.inputs, passes.outputs, passes.live
    grad_outputs = rule.gradient_mapper(relevance, outputs)
    if isinstance(grad_outputs, Tensor):  # zennit's ε rule maps to one tensor, the others to a list
        grad_outputs = [grad_outputs]
    gradients = list(modified_inputs)  # an all-zero input is also its own (zero) gradient
    if live:
        found = torch.autograd.grad(
            [outputs[i] for i in live], [modified_inputs[i] for i in live],
            grad_outputs=[grad_outputs[i] for i in live], retain_graph=keep,
        )
        for i, gradient in zip(live, found):
            gradients[i] = gradient
    result = rule.reducer([value.detach() for value in modified_inputs], gradients)
    return tuple(result if value.shape == result.shape else None for value in inputs)


def lean(composite: Composite) -> Composite:
    """The composite with every rule that can be attached lean wrapped in a ``LeanRule`` (in place)."""
    base = composite.module_map

    def module_map(ctx: dict, name: str, module: nn.Module) -> Hook | LeanRule | None:
        return lean_rule(base(ctx, name, module))

    composite.module_map = module_map
    return composite


def lean_rule(rule: Hook | LeanRule | None) -> Hook | LeanRule | None:
    """``rule`` as a ``LeanRule`` where it can be attached lean; otherwise unchanged."""
    if rule is None or isinstance(rule, LeanRule) or not LeanRule.attachable(rule):
        return rule
    return LeanRule(rule)


def replayable(composite: Composite) -> bool:
    """Whether a graph recorded while ``composite`` is registered keeps its rules after the composite
    is removed: every rule attached lean (a ``RuleNode`` is part of the graph, with the rule and module
    it needs; zennit's hooks are removed from the graph with the composite). Then ``attribution.reuse``
    may record the trained bottom under these rules once and replay it in later stages; the modules
    replayed are trained and, under the same canonizers, hold the same parameters at every replay."""
    hooks = list(composite.hook_refs)
    return bool(hooks) and all(isinstance(hook, LeanRule) and hook.lean for hook in hooks)
