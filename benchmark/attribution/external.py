"""Methods of other libraries and of the user, treated like ours (DESIGN §4).

``captum:<Class>`` wraps a Captum attribution class; a code reference (``package.module:function``
or ``path/to/file.py:function``) names a function ``(model, inputs, targets, **args) -> maps``,
Quantus' ``explain_func`` convention. Both are called by ``chunked_maps``: the batch is cut into
chunks of at most ``chunk_size`` images (as every pass of ours is), gradients are enabled, and
whatever comes back (a tensor or an array, [N,H,W] or [N,C,H,W], a layer's smaller maps) becomes
[N,C,H,W] maps on the inputs' device, or a clear error naming the method and the shape. From
there on, maps of these methods go through the same reductions, metrics, tables and figures as
ours.

Passes per image are known for the Captum classes listed in ``CAPTUM_PASSES`` and for a callable
that declares them (``passes: {forward: 1, backward: 1}``); otherwise the speed accounting lists
the method as not counted in advance (the passes the pipeline really makes are still recorded).
"""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..config.spec import CallableSpec, CaptumSpec
from ..models.bundle import ModelBundle
from ..usercode import UserCodeError, load, parse_ref
from .base import AttributionContext, AttributionMethod, MethodNotSupported, Passes, register_method_scheme

# Passes per image of one attribute() call, for Captum classes whose count does not depend on the input.
CAPTUM_PASSES: dict[str, Callable[[dict[str, Any]], Passes]] = {
    "Saliency": lambda args: Passes(1, 1),
    "InputXGradient": lambda args: Passes(1, 1),
    "GuidedBackprop": lambda args: Passes(1, 1),
    "Deconvolution": lambda args: Passes(1, 1),
    "LayerGradCam": lambda args: Passes(1, 1),
    "GuidedGradCam": lambda args: Passes(2, 2),
    "IntegratedGradients": lambda args: Passes(int(args.get("n_steps", 50)), int(args.get("n_steps", 50))),
}
LAYER_ARGUMENTS = ("layer",)  # constructor arguments that name a module of the model


def chunked_maps(
    call: Callable[[Tensor, Tensor], Any],
    inputs: Tensor,
    targets: Tensor,
    chunk_size: int,
    who: str,
    upsample: str | None = None,
) -> Tensor:
    """``call(inputs[chunk], targets[chunk])`` over chunks of at most ``chunk_size`` images, as [N,C,H,W] maps."""
    targets = targets.to(inputs.device)
    pieces = []
    with torch.inference_mode(False), torch.enable_grad():
        for start in range(0, inputs.shape[0], chunk_size):
            x = inputs[start : start + chunk_size].detach().clone()
            pieces.append(as_maps(call(x, targets[start : start + chunk_size]), x, who, upsample))
    return torch.cat(pieces)


def as_maps(result: Any, inputs: Tensor, who: str, upsample: str | None = None) -> Tensor:
    """[N,C,H,W] float maps on the inputs' device from a method's result (tensor or array; [N,H,W] too;
    smaller maps resized with ``upsample``, e.g. a layer's attribution)."""
    if isinstance(result, (tuple, list)) and len(result) == 1:
        result = result[0]
    if isinstance(result, np.ndarray):
        result = torch.from_numpy(np.ascontiguousarray(result))
    if not isinstance(result, Tensor):
        raise ValueError(f"{who}: returned {type(result).__name__}; expected a tensor or array of maps")
    n, _, height, width = inputs.shape
    maps = result.detach().to(device=inputs.device, dtype=inputs.dtype)
    if maps.ndim == 3:
        maps = maps.unsqueeze(1)
    expected = f"[N,H,W] or [N,C,H,W] with N={n}" + ("" if upsample else f", H×W={height}×{width}")
    if maps.ndim != 4 or maps.shape[0] != n:
        raise ValueError(f"{who}: returned maps of shape {tuple(result.shape)}; expected {expected}")
    if maps.shape[-2:] != (height, width):
        if upsample is None:
            raise ValueError(f"{who}: returned maps of shape {tuple(result.shape)}; expected {expected}")
        align = {"align_corners": False} if upsample == "bilinear" else {}
        maps = torch.nn.functional.interpolate(maps, size=(height, width), mode=upsample, **align)
    return maps.contiguous()


def _parameters(function: Callable, skip: int) -> list[str]:
    """Keyword parameters of ``function`` after its first ``skip`` ones (self, model/forward_func, …)."""
    parameters = list(inspect.signature(function).parameters.values())[skip:]
    return [p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@register_method_scheme(("captum:<AttributionClass>",), lambda name: name.startswith("captum:"), CaptumSpec)
class CaptumMethod(AttributionMethod):
    """A Captum attribution class, constructed on the model per call and run chunk by chunk."""

    spec: CaptumSpec

    def __init__(self, spec: CaptumSpec, attribution: type, init: dict[str, Any], call: dict[str, Any],
                 layers: dict[str, str]) -> None:
        super().__init__(spec)
        self.attribution, self.init, self.call, self.layers = attribution, init, call, layers
        self.takes_batch_size = "internal_batch_size" in _parameters(attribution.attribute, 1)

    @classmethod
    def build(cls, spec: CaptumSpec, model: ModelBundle) -> "CaptumMethod":
        try:
            import captum.attr
        except ImportError:
            raise MethodNotSupported(f"{spec.name}: Captum is not installed (pip install 'benchmark[captum]')") from None
        class_name = spec.name.partition(":")[2]
        attribution = getattr(captum.attr, class_name, None)
        if not (isinstance(attribution, type) and issubclass(attribution, captum.attr.Attribution)):
            names = [n for n in dir(captum.attr) if isinstance(getattr(captum.attr, n), type)
                     and issubclass(getattr(captum.attr, n), captum.attr.Attribution)]
            close = difflib.get_close_matches(class_name, names, n=4)
            raise MethodNotSupported(
                f"{spec.name}: captum.attr has no attribution class '{class_name}'"
                + (f"; close: {', '.join(close)}" if close else "")
            )
        init_names = _parameters(attribution.__init__, 2)  # self, forward_func / model
        call_names = [n for n in _parameters(attribution.attribute, 2) if n != "target"]  # self, inputs
        init, call, layers = {}, {}, {}
        for key, value in spec.args.items():
            if key in init_names:
                init[key] = value
            elif key in call_names:
                call[key] = value
            else:
                raise MethodNotSupported(
                    f"{spec.name}: '{key}' is an argument of neither {class_name}() ({', '.join(init_names) or 'none'}) "
                    f"nor its attribute() ({', '.join(call_names)})"
                )
        modules = dict(model.module.named_modules())
        for key in LAYER_ARGUMENTS:
            if key in init:
                if init[key] not in modules:
                    examples = ", ".join(name for name in list(modules)[1:8])
                    raise MethodNotSupported(f"{spec.name}: {key} '{init[key]}' is not a module of {model.name} (e.g. {examples}, …)")
                layers[key] = init.pop(key)
        required = [p.name for p in list(inspect.signature(attribution.__init__).parameters.values())[2:]
                    if p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        missing = [name for name in required if name not in init and name not in layers]
        if missing:
            hint = " (a module name of the model)" if set(missing) & set(LAYER_ARGUMENTS) else ""
            raise MethodNotSupported(f"{spec.name}: {class_name}() needs {', '.join(missing)}{hint}: give it in args")
        return cls(spec, attribution, init, call, layers)

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        modules = dict(model.module.named_modules())
        instance = self.attribution(model.module, **self.init, **{k: modules[v] for k, v in self.layers.items()})
        call = dict(self.call)
        if self.takes_batch_size:
            call.setdefault("internal_batch_size", context.chunk_size)  # IG-like: steps cut into chunks too
        upsample = self.spec.upsample if self.layers else None

        def run(x: Tensor, t: Tensor) -> Any:
            return instance.attribute(x.requires_grad_(True), target=t, **call)

        return chunked_maps(run, inputs, targets, context.chunk_size, self.id, upsample)

    def passes(self) -> Passes | None:
        count = CAPTUM_PASSES.get(self.spec.name.partition(":")[2])
        return count(self.spec.args) if count else None


def _is_callable_reference(name: str) -> bool:
    return not name.startswith("captum:") and parse_ref(name) is not None


@register_method_scheme(("<module>:<function>", "<file.py>:<function>"), _is_callable_reference, CallableSpec)
class CallableMethod(AttributionMethod):
    """A user's ``function(model, inputs, targets, **args) -> maps``, called chunk by chunk."""

    spec: CallableSpec

    def __init__(self, spec: CallableSpec, function: Callable[..., Any]) -> None:
        super().__init__(spec)
        self.function = function

    @classmethod
    def build(cls, spec: CallableSpec, model: ModelBundle) -> "CallableMethod":
        try:
            function = load(spec.name)
        except UserCodeError as error:
            raise MethodNotSupported(f"method '{spec.name}': {error}") from None
        if not callable(function):
            raise MethodNotSupported(f"method '{spec.name}' is not callable")
        return cls(spec, function)

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        numpy = self.spec.arrays == "numpy"

        def run(x: Tensor, t: Tensor) -> Any:
            if numpy:
                return self.function(model.module, x.cpu().numpy(), t.cpu().numpy(), **self.spec.args)
            return self.function(model.module, x, t, **self.spec.args)

        return chunked_maps(run, inputs, targets, context.chunk_size, f"method '{self.id}' ({self.spec.name})")

    def passes(self) -> Passes | None:
        declared = self.spec.passes
        return None if declared is None else Passes(declared.forward, declared.backward)


__all__ = ["CAPTUM_PASSES", "CallableMethod", "CaptumMethod", "as_maps", "chunked_maps"]
