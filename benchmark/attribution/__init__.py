"""Attribution methods of DESIGN §4 behind one interface.

``build_method(spec, model)`` turns a method spec into an ``AttributionMethod`` (refusing, early,
what it cannot compute correctly); ``method.attribute(model, inputs, targets, context)`` is one
batched call giving [N,C,H,W] maps; ``reduce_channels`` makes them 2-D.

Modules: ``base`` (interface, registry), ``backward`` (the one gradient mechanism), ``paths`` and
``quadrature`` (IG and SmoothGrad points), ``gradient`` (gradient, ×input, IG, SmoothGrad),
``guided`` (guided backprop), ``lrp`` (zennit composites and canonizers), ``noise`` (the
uninformative baseline), ``external`` (Captum classes and the user's callables), ``probes``
(what an unknown model allows: LRP conservation, functional activations), ``keyed_rng`` (device
noise as a pure function of keys), ``reduction``.
"""

from . import external, gradient, guided, lrp, noise  # noqa: F401  (register the methods)
from .base import (
    METHOD_SCHEMES,
    METHODS,
    AttributionContext,
    AttributionMethod,
    MethodNotSupported,
    Passes,
    build_method,
    passes_per_state,
    register_method,
    register_method_scheme,
)
from .external import CallableMethod, CaptumMethod
from .gradient import Gradient, GradientXInput, IntegratedGradients, SmoothGrad
from .guided import GuidedBackprop
from .lrp import CANONIZERS, COMPOSITES, LRP, register_composite
from .noise import Noise, noise_maps
from .reduction import REDUCTIONS, reduce_channels

__all__ = [
    "CANONIZERS",
    "COMPOSITES",
    "LRP",
    "METHODS",
    "METHOD_SCHEMES",
    "CallableMethod",
    "CaptumMethod",
    "REDUCTIONS",
    "AttributionContext",
    "AttributionMethod",
    "Gradient",
    "GradientXInput",
    "GuidedBackprop",
    "IntegratedGradients",
    "MethodNotSupported",
    "Noise",
    "Passes",
    "SmoothGrad",
    "build_method",
    "noise_maps",
    "passes_per_state",
    "reduce_channels",
    "register_composite",
    "register_method",
    "register_method_scheme",
]
