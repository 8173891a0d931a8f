"""The one walk over a batch's model states: trained, then every (seed, stage) of the plan, once each.

For every state the walk randomizes the model in place (one ``Randomizer.randomize`` per state),
runs the state's forward pass when an experiment or the target policy needs its logits, derives
the state's targets and its attribution context (with the recorded trained bottom of
``attribution.reuse`` seen from this stage), and hands the state to the experiments. Cascading
stages build on the previous one, independent stages start from the trained model, every seed
starts from the trained model, and the trained model is back in place afterwards, also when an
experiment fails midway.

The walk also says when each state is done (``StateProgress``): a long batch shows progress per
model state, and within the trained state (whose occlusion curves take long) once its maps exist.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Callable, Iterator, Sequence

import torch

from ..attribution import AttributionContext
from ..attribution.reuse import BottomReuse, StageReuse
from ..config.spec import JobSpec
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer, Stage
from ..profiling import span
from .base import observes_randomized
from .state import STATE_FORWARD, Batch, ModelState
from .targets import needs_stage_forward, reference_targets, stage_targets

REFERENCE_SEED = 0  # the trained model's maps do not depend on the randomization seed
RANDOMIZING = "randomization (stages applied and restored)"


@contextmanager
def stage_walk(
    randomizer: Randomizer, plan: RandomizationPlan, seeds: Sequence[int]
) -> Iterator[Iterator[tuple[int, Stage]]]:
    """``with stage_walk(r, plan, seeds) as states: for seed, stage in states: ...``: the model randomized
    into each (seed, stage) in turn, restored after each seed and at the end."""

    def states() -> Iterator[tuple[int, Stage]]:
        for seed in seeds:
            for stage in plan.stages:
                with span(RANDOMIZING):
                    if not stage.cumulative:
                        randomizer.restore()
                    randomizer.randomize(stage.modules, seed)
                yield seed, stage
            with span(RANDOMIZING):
                randomizer.restore()

    try:
        yield states()
    finally:
        randomizer.restore()


def walked_states(spec: JobSpec, stages: int) -> int:
    """Model states each image of a job passes through when its plan has ``stages`` stages: the
    trained model, then every seed x stage when some enabled experiment looks at randomized states
    (what ``StateWalk.states_per_batch`` walks; the driver knows it without building the model)."""
    return 1 + len(spec.randomization.seeds) * stages if stages and observes_randomized(spec) else 1


class StateProgress:
    """Reports a batch's images once per model state as the walk finishes it, ``states`` times in
    all; the trained state in two parts: ``explained`` of it once the maps of ``methods`` (method
    ids) exist, the rest when it is done. The units of a batch add up to images x states."""

    def __init__(self, images: int, states: int, report: Callable[[float], None], explained: float = 0.0,
                 methods: frozenset[str] = frozenset()) -> None:
        self.images, self.states, self.report = images, states, report
        self.explained, self.methods = explained, methods
        self.done, self.partial = 0, 0.0

    def maps_computed(self, methods: set[str]) -> None:
        """The trained state now has the maps of ``methods``."""
        if self.done == 0 and self.partial == 0 and self.methods and self.methods <= methods:
            self.partial = min(self.explained, 1.0)
            self._report(self.images * self.partial)

    def state_done(self) -> None:
        if self.done < self.states:
            self.done += 1
            rest, self.partial = 1.0 - self.partial, 0.0
            self._report(self.images * rest)

    def _report(self, units: float) -> None:
        if units > 0:
            self.report(units)


class StateWalk:
    """Built once per worker; ``states(batch)`` yields the batch's model states in order.

    ``randomized``: walk the plan's (seed, stage) states too (some experiment looks at them);
    ``stage_logits``: run each randomized state's forward pass (some experiment needs the logits);
    ``reuse``: record the trained model's plain gradient pass and replay its bottom in later stages.
    """

    def __init__(
        self,
        model: ModelBundle,
        plan: RandomizationPlan,
        seeds: Sequence[int],
        target_policy: str,
        chunk_size: int,
        *,
        randomized: bool,
        stage_logits: bool,
        reuse: bool,
    ) -> None:
        self.model, self.plan, self.seeds = model, plan, list(seeds)
        self.target_policy, self.chunk_size = target_policy, chunk_size
        self.randomized = randomized and bool(plan.stages)
        self.stage_forward = self.randomized and (stage_logits or needs_stage_forward(target_policy))
        self.reuse = reuse and self.randomized
        self.randomizer = Randomizer(model.module)

    @property
    def states_per_batch(self) -> int:
        return 1 + (len(self.seeds) * len(self.plan.stages) if self.randomized else 0)

    def states(
        self,
        batch: Batch,
        trained_forward: AbstractContextManager = nullcontext(),
        progress: StateProgress | None = None,
    ) -> Iterator[ModelState]:
        """The trained model (its forward pass run inside ``trained_forward``), then every randomized state;
        ``progress`` hears of each state once the experiments are done with it (the walk resumes).

        Close the iterator when stopping early (``contextlib.closing``): that restores the trained model.
        """
        with torch.no_grad(), trained_forward, span(STATE_FORWARD):
            logits = self.model.module(batch.inputs)
        targets = reference_targets(self.target_policy, batch.labels, logits)
        reuse = BottomReuse(batch.inputs) if self.reuse else None
        try:
            context = self._context(batch, REFERENCE_SEED, 0, reuse.at(set()) if reuse is not None else None)
            on_maps = progress.maps_computed if progress is not None else None
            yield ModelState(batch, self.model, None, None, targets, logits, context, on_maps=on_maps)
            if progress is not None:
                progress.state_done()
            if not self.randomized:
                return
            with stage_walk(self.randomizer, self.plan, self.seeds) as walk:
                for seed, stage in walk:
                    stage_logits = None
                    if self.stage_forward:
                        with torch.no_grad(), span(STATE_FORWARD):
                            stage_logits = self.model.module(batch.inputs)
                    target = stage_targets(self.target_policy, targets, stage_logits)
                    stage_reuse = reuse.at(self.randomizer.randomized_modules) if reuse is not None else None
                    context = self._context(batch, seed, stage.index, stage_reuse)
                    yield ModelState(batch, self.model, seed, stage, target, stage_logits, context)
                    if progress is not None:
                        progress.state_done()
        finally:
            if reuse is not None:
                reuse.release()

    def _context(self, batch: Batch, seed: int, stage: int, reuse: StageReuse | None) -> AttributionContext:
        return AttributionContext(batch.image_ids, seed, stage, self.chunk_size, {}, reuse)
