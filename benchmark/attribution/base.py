"""The common interface of every attribution method (DESIGN §4).

A method is built once per (spec, model) with ``build_method``, which refuses what it cannot do
correctly *before* any work starts, and is then called once per batch and randomization stage.
Methods register themselves here by name (the spec's ``name``) together with the spec class
their job section is validated with, in the spirit of zennit's composite registry: the job spec
reads this registry, so adding a method touches one module. Methods named by a pattern
(``captum:<Class>``, a code reference ``module:function``) register a *scheme* instead.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, TypeVar

from torch import Tensor
from zennit.core import Composite

from ..config.spec import MethodBase
from ..models.bundle import ModelBundle
from .lean_rules import replayable
from .reduction import reduce_channels
from .reuse import StageReuse


class MethodNotSupported(NotImplementedError):
    """A method that cannot be computed correctly for this model or these settings (yet).

    Raised by ``build_method``, never in the middle of a run, and never replaced by a silent
    approximation.
    """


@dataclass
class AttributionContext:
    """One per (stage, batch): what methods may depend on besides the model and the inputs.

    ``cache`` lets methods share work inside the context (gradient and gradient×input share one
    backward pass); it must be a fresh dict for every stage and batch. ``reuse`` lets the plain
    gradient pass skip the forward of the modules below the first randomized one.
    """

    image_keys: list[str]  # stable ids of the images, for noise that is a pure function of the image
    seed: int = 0  # randomization seed of the run dimension
    stage: int = 0  # randomization stage (0 = trained model)
    chunk_size: int = 64  # most inputs in one forward/backward pass
    cache: dict[str, Any] = field(default_factory=dict)
    reuse: StageReuse | None = None  # the batch's recorded trained forward, seen from this stage (``reuse``)
    # Another explanation of the same images in the same model state that must not share the per-request
    # randomness of the first (the random-logit test's other class): the noise baseline draws afresh for it.
    variant: str | None = None

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1, got {self.chunk_size}")

    def check_batch(self, inputs: Tensor) -> None:
        """Methods whose values depend on the image keys call this: one key per image."""
        if len(self.image_keys) != inputs.shape[0]:
            raise ValueError(f"{len(self.image_keys)} image keys for a batch of {inputs.shape[0]} images")


@dataclass(frozen=True)
class Passes:
    """Model passes per image of one method call (DESIGN §10 speed accounting).

    ``shared`` names a cache entry whose passes are paid once per context however many methods
    report it (gradient and gradient×input both report the same input gradient).
    """

    forward: int
    backward: int
    shared: str | None = None


def passes_per_state(methods: "list[AttributionMethod]") -> int:
    """Forward+backward passes per image to explain one model state with every method whose passes are
    known in advance (passes that methods share, like the input gradient of gradient and
    gradient×input, counted once)."""
    shared: set[str] = set()
    total = 0
    for method in methods:
        passes = method.passes()
        if passes is None:  # not known in advance (bench.accounting.uncounted lists them)
            continue
        if passes.shared is not None:
            if passes.shared in shared:
                continue
            shared.add(passes.shared)
        total += passes.backward
    return total


# The method whose backward rules are registered on the model right now (None: plain autograd).
# The speed accounting reads it to replay every pass with the same rules, and nothing else.
ACTIVE_RULES: ContextVar[str | None] = ContextVar("active_rules", default=None)
# Whether the active rules survive in a recorded graph (``lean_rules.replayable``): passes under them may replay.
REPLAYABLE_RULES: ContextVar[bool] = ContextVar("replayable_rules", default=False)


class AttributionMethod(ABC):
    """An attribution method bound to its spec; ``attribute`` is one batched call."""

    spec_type: ClassVar[type[MethodBase]]  # the spec class of its job section (set by ``register_method``)
    id: str
    spec: MethodBase

    def __init__(self, spec: MethodBase) -> None:
        self.spec = spec
        self.id = spec.method_id

    @property
    def reduction(self) -> str:
        """How the method's [N,C,H,W] maps become 2-D (``reduce_channels``)."""
        return self.spec.reduction

    @classmethod
    def build(cls, spec: MethodBase, model: ModelBundle) -> "AttributionMethod":
        """The method for this model; subclasses check here what they cannot do (``MethodNotSupported``)."""
        return cls(spec)

    @abstractmethod
    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        """Maps [N,C,H,W] for normalized ``inputs`` [N,C,H,W] and long ``targets`` [N], on the inputs' device.

        Leaves the model as it found it: no hooks, no canonizer, parameters bit-identical.
        """

    def backward_rules(self, model: ModelBundle, inputs: Tensor) -> Composite | None:
        """The zennit composite that modifies this method's backward pass; None for the plain gradient."""
        return None

    @property
    def has_backward_rules(self) -> bool:
        """Whether this method's passes run under backward rules: a kind of pass of its own for the speed
        accounting and the execution probe (a zennit-hooked pass costs more than a plain one)."""
        return type(self).backward_rules is not AttributionMethod.backward_rules

    @property
    def recorded_graphs(self) -> int:
        """Plain forward graphs' worth of memory a recorded pass of this method keeps for the replays
        (``attribution.reuse``; 0: its passes share the plain gradient's recording): for the chunk size."""
        return 1 if self.has_backward_rules else 0

    @contextmanager
    def rules_applied(self, model: ModelBundle, inputs: Tensor) -> Iterator[None]:
        """The method's backward rules registered on the model for the duration (removed after)."""
        composite = self.backward_rules(model, inputs)
        if composite is None:
            yield
            return
        token = ACTIVE_RULES.set(self.id)
        try:
            with composite.context(model.module):
                replay = REPLAYABLE_RULES.set(replayable(composite))
                try:
                    yield
                finally:
                    REPLAYABLE_RULES.reset(replay)
        finally:
            ACTIVE_RULES.reset(token)

    @abstractmethod
    def passes(self) -> Passes | None:
        """Forward and backward passes per image of one ``attribute`` call; None when not known in
        advance (a method of another library or of the user: the speed accounting says so)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


METHODS: dict[str, type[AttributionMethod]] = {}


@dataclass(frozen=True)
class MethodScheme:
    """Methods named by a pattern: ``matches(name)`` decides, ``placeholders`` are how errors list it."""

    placeholders: tuple[str, ...]
    matches: Callable[[str], bool]
    method: type[AttributionMethod]


METHOD_SCHEMES: list[MethodScheme] = []

M = TypeVar("M", bound=type[AttributionMethod])


def register_method(name: str, spec_type: type[MethodBase]) -> Callable[[M], M]:
    """Class decorator: the method a spec with this ``name`` describes, validated as ``spec_type``."""

    def wrap(method: M) -> M:
        method.spec_type = spec_type
        METHODS[name] = method
        return method

    return wrap


def register_method_scheme(
    placeholders: tuple[str, ...], matches: Callable[[str], bool], spec_type: type[MethodBase]
) -> Callable[[M], M]:
    """Class decorator: the method of every name ``matches`` accepts (checked after the exact names)."""

    def wrap(method: M) -> M:
        method.spec_type = spec_type
        METHOD_SCHEMES.append(MethodScheme(tuple(placeholders), matches, method))
        return method

    return wrap


def method_class(name: str) -> type[AttributionMethod] | None:
    if name in METHODS:
        return METHODS[name]
    return next((scheme.method for scheme in METHOD_SCHEMES if scheme.matches(name)), None)


def method_spec_type(name: str) -> type[MethodBase] | None:
    """The spec class a method section of this name is validated with (None: no such method)."""
    _register_builtin_methods()
    method = method_class(name)
    return None if method is None else method.spec_type


def method_spec_types() -> list[type[MethodBase]]:
    _register_builtin_methods()
    types = [method.spec_type for method in METHODS.values()] + [scheme.method.spec_type for scheme in METHOD_SCHEMES]
    return list(dict.fromkeys(types))


def allowed_method_names() -> str:
    _register_builtin_methods()
    names = [f"'{name}'" for name in METHODS]
    names += [f"'{placeholder}'" for scheme in METHOD_SCHEMES for placeholder in scheme.placeholders]
    return f"{', '.join(names[:-1])} or {names[-1]}"


def _register_builtin_methods() -> None:
    from .. import attribution  # noqa: F401  (importing the package registers every method module)


def build_method(spec: MethodBase, model: ModelBundle) -> AttributionMethod:
    """The method a spec describes, for this model; raises ``MethodNotSupported`` early."""
    name = getattr(spec, "name", None)
    method = method_class(name) if isinstance(name, str) else None
    if method is None:
        raise ValueError(f"unknown attribution method '{name}'; registered: {allowed_method_names()}")
    return method.build(spec, model)


__all__ = [
    "ACTIVE_RULES",
    "AttributionContext",
    "AttributionMethod",
    "METHODS",
    "MethodNotSupported",
    "Passes",
    "METHOD_SCHEMES",
    "allowed_method_names",
    "build_method",
    "method_class",
    "method_spec_type",
    "passes_per_state",
    "reduce_channels",
    "register_method",
    "register_method_scheme",
]
