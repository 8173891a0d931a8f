"""The common interface of every experiment, and their registry (DESIGN §5–7).

An experiment is an observer of the batch's model states. The batch evaluator walks the states
once (``walk.StateWalk``: trained model first, then every (seed, stage) of the plan) and hands
each to every enabled experiment; an experiment never randomizes, restores or runs the model
forward on its own account, and asks the state for the maps of the job's methods
(``ModelState.maps``), which are computed once per state however many experiments need them.

Per batch an experiment sees::

    start(batch)           # before the trained model's forward pass
    observe(state)         # the trained model, then every randomized state (unless it observes the trained only)
    finish() -> tables     # {table name: Arrow table}; the writer stamps shard and partition columns

Experiments register by the name of the job-spec section that configures them, like the
methods: ``@register_experiment("my_section", spec=MySection)``. A new experiment is one module
with its section's spec class and its experiment class (docs/extending.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Callable, ClassVar, TypeVar

import pyarrow as pa

from ..attribution import AttributionMethod, Passes
from ..config.spec import JobSpec, StrictModel, register_section, unregister_section
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan
from .state import Batch, ModelState


@dataclass(frozen=True)
class Setup:
    """What a worker builds once and every experiment may use."""

    spec: JobSpec
    model: ModelBundle
    plan: RandomizationPlan
    methods: list[AttributionMethod]  # the job's methods, in the job's order
    chunk_size: int  # most inputs in one forward/backward pass


class Experiment(ABC):
    """One experiment of a job, built once per worker and fed every model state of each batch."""

    section: ClassVar[str]  # its job-spec section (set by ``register_experiment``)
    tables: ClassVar[tuple[str, ...]] = ()  # the tables it may write (each needs a schema, see docs/extending.md)
    stage_logits: ClassVar[bool] = False  # True: every randomized state's forward pass is run for its logits
    # True: it reads only the explained class's logit of each state (``ModelState.explained_logits``),
    # which the plain gradient pass computes anyway; a state's forward pass is run only where none is made
    explained_logits: ClassVar[bool] = False

    @classmethod
    def enabled(cls, spec: JobSpec) -> bool:
        """Whether a job runs this experiment: by default its section's ``enabled``."""
        return bool(getattr(spec.section(cls.section), "enabled", False))

    @classmethod
    def observes_randomized_states(cls, spec: JobSpec) -> bool:
        """Whether it looks at the randomized states too (default), or at the trained model only."""
        return True

    @classmethod
    @abstractmethod
    def build(cls, setup: Setup) -> "Experiment":
        """The experiment for this job and model; refuses here (``ValueError``) what it cannot do."""

    def trained_forward(self) -> AbstractContextManager:
        """Hooks wanted on the trained model's forward pass, the one every batch makes (default: none)."""
        return nullcontext()

    def start(self, batch: Batch) -> None:
        """A new batch begins."""

    @abstractmethod
    def observe(self, state: ModelState) -> None:
        """Look at one model state (keep results on the device until ``finish``)."""

    @abstractmethod
    def finish(self) -> dict[str, pa.Table]:
        """The batch's rows, by table; without shard and partition columns (the writer adds them)."""

    # -- what it costs (``benchmark bench`` derives the expected model passes from these) --------------
    def explains(self) -> list[AttributionMethod]:
        """The job's methods whose maps it asks of every state it observes (shared with the others)."""
        return []

    def explains_at(self, stage: int) -> list[AttributionMethod]:
        """The methods whose maps it asks of the states of plan stage ``stage`` (0: the trained model);
        by default ``explains()`` at every stage. An experiment that looks at some stages' maps only
        (eMPRT: the trained and the last) says so here, so that ``benchmark bench`` counts right."""
        return self.explains()

    def own_passes(self, states: int) -> Passes:
        """Model passes per image it runs itself in a batch where it observes ``states`` states:
        ``forward`` forward-only, ``backward`` forward+backward (default: none)."""
        return Passes(forward=0, backward=0)


EXPERIMENTS: dict[str, type[Experiment]] = {}

E = TypeVar("E", bound=type[Experiment])


def register_experiment(section: str, spec: type[StrictModel] | None = None) -> Callable[[E], E]:
    """Class decorator: the experiment a job's ``section`` configures.

    ``spec``: the section's spec class when ``JobSpec`` does not declare the section itself (a new
    experiment); from then on jobs may carry the section and are validated against it.
    """

    def wrap(experiment: E) -> E:
        if spec is not None:
            register_section(section, spec)
        experiment.section = section
        EXPERIMENTS[section] = experiment
        return experiment

    return wrap


def unregister_experiment(section: str) -> None:
    """Forget an experiment and its section (tests that register a toy one clean up with this)."""
    EXPERIMENTS.pop(section, None)
    unregister_section(section)


def enabled_experiments(spec: JobSpec) -> list[type[Experiment]]:
    """The job's enabled experiments, in registration order."""
    return [experiment for experiment in EXPERIMENTS.values() if experiment.enabled(spec)]


def observes_randomized(spec: JobSpec) -> bool:
    """Whether some enabled experiment of the job looks at the randomized states (then they are walked)."""
    return any(experiment.observes_randomized_states(spec) for experiment in enabled_experiments(spec))


def experiment_tables() -> tuple[str, ...]:
    """Every table a registered experiment may write, in registration order."""
    return tuple(dict.fromkeys(table for experiment in EXPERIMENTS.values() for table in experiment.tables))
