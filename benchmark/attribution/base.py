"""The common interface of every attribution method (DESIGN §4).

A method is built once per (spec, model) with ``build_method``, which refuses what it cannot do
correctly *before* any work starts, and is then called once per batch and randomization stage.
Methods register themselves here by name (the spec's ``name``), in the spirit of zennit's
composite registry, so adding a method touches one module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from torch import Tensor
from zennit.core import Composite

from ..config.spec import MethodBase
from ..models.bundle import ModelBundle
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
    """Forward+backward passes per image to explain one model state with every method (passes that
    methods share, like the input gradient of gradient and gradient×input, counted once)."""
    shared: set[str] = set()
    total = 0
    for method in methods:
        passes = method.passes()
        if passes.shared is not None:
            if passes.shared in shared:
                continue
            shared.add(passes.shared)
        total += passes.backward
    return total


# The method whose backward rules are registered on the model right now (None: plain autograd).
# The speed accounting reads it to replay every pass with the same rules, and nothing else.
ACTIVE_RULES: ContextVar[str | None] = ContextVar("active_rules", default=None)


class AttributionMethod(ABC):
    """An attribution method bound to its spec; ``attribute`` is one batched call."""

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
                yield
        finally:
            ACTIVE_RULES.reset(token)

    @abstractmethod
    def passes(self) -> Passes:
        """Forward and backward passes per image of one ``attribute`` call."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"


METHODS: dict[str, type[AttributionMethod]] = {}

M = TypeVar("M", bound=type[AttributionMethod])


def register_method(name: str) -> Callable[[M], M]:
    """Class decorator: the method a spec with this ``name`` describes."""

    def wrap(method: M) -> M:
        METHODS[name] = method
        return method

    return wrap


def build_method(spec: MethodBase, model: ModelBundle) -> AttributionMethod:
    """The method a spec describes, for this model; raises ``MethodNotSupported`` early."""
    name = getattr(spec, "name", None)
    try:
        method = METHODS[name]
    except KeyError:
        raise ValueError(f"unknown attribution method '{name}'; registered: {', '.join(sorted(METHODS))}") from None
    return method.build(spec, model)


__all__ = [
    "ACTIVE_RULES",
    "AttributionContext",
    "AttributionMethod",
    "METHODS",
    "MethodNotSupported",
    "Passes",
    "build_method",
    "passes_per_state",
    "reduce_channels",
    "register_method",
]
