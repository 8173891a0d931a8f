"""Walking a randomization plan: the model in each (seed, stage) state in turn, then restored.

The experiments of DESIGN §7 that look at randomized models (logits, skip path, kept features)
walk the same plan as the randomization check: cascading stages build on the previous one,
independent stages start from the trained model, every seed starts from the trained model, and
the trained model is back in place afterwards, also when an experiment fails midway.

Each walk also says when a state is done (``state_done``), so that a long batch shows progress
per model state (and within the trained state, whose occlusion curves take long: ``state_part``);
who listens is set around the batch (``counting_states``).
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Sequence

from ..config.spec import JobSpec
from ..models.randomization import RandomizationPlan, Randomizer, Stage



def walked_states(spec: JobSpec, stages: int) -> int:
    """Model states each image passes through: the trained model, then every seed × stage of a
    plan of ``stages`` stages when an experiment walks it (the randomization check, logits, skip
    path, kept features)."""
    walks = spec.randomization.enabled or spec.logits.enabled or spec.skip_path.enabled
    walks = walks or spec.kept_activation_explanation.enabled
    return 1 + len(spec.randomization.seeds) * stages if walks and stages else 1


class StateCounter:
    """Reports a batch's images once per model state, ``states`` times in all, however many
    experiments walk the states: the first walk reports, later walks of the same states are
    already counted, and ``finish`` reports whatever was not reported yet. A state may be reported
    in parts (``part``): the units of a batch always add up to images × states."""

    def __init__(self, images: int, states: int, report: Callable[[float], None] | None) -> None:
        self.images, self.states, self.report, self.done, self.partial = images, states, report, 0, 0.0

    def part(self, fraction: float) -> None:
        """``fraction`` more of the current state's work is done."""
        step = min(fraction, 1.0 - self.partial)
        if self.done < self.states and step > 0:
            self.partial += step
            self._report(self.images * step)

    def __call__(self) -> None:
        if self.done < self.states:
            self.done += 1
            rest, self.partial = 1.0 - self.partial, 0.0
            self._report(self.images * rest)

    def finish(self) -> None:
        while self.done < self.states:
            self()

    def _report(self, units: float) -> None:
        if self.report is not None and units > 0:
            self.report(units)


_COUNTER: ContextVar[StateCounter | None] = ContextVar("state_counter", default=None)


@contextmanager
def counting_states(counter: StateCounter) -> Iterator[None]:
    """``state_done()`` and ``state_part()`` go to ``counter`` while this context is open (in this thread)."""
    token = _COUNTER.set(counter)
    try:
        yield
    finally:
        _COUNTER.reset(token)


def state_done() -> None:
    """One model state of the batch is done (a no-op when nobody counts)."""
    counter = _COUNTER.get()
    if counter is not None:
        counter()


def state_part(fraction: float) -> None:
    """``fraction`` of the current model state's work is done (a no-op when nobody counts)."""
    counter = _COUNTER.get()
    if counter is not None:
        counter.part(fraction)


@contextmanager
def stage_walk(
    randomizer: Randomizer, plan: RandomizationPlan, seeds: Sequence[int]
) -> Iterator[Iterator[tuple[int, Stage]]]:
    """``with stage_walk(r, plan, seeds) as states: for seed, stage in states: ...``"""

    def states() -> Iterator[tuple[int, Stage]]:
        for seed in seeds:
            for stage in plan.stages:
                if not stage.cumulative:
                    randomizer.restore()
                randomizer.randomize(stage.modules, seed)
                yield seed, stage
                state_done()
            randomizer.restore()

    try:
        yield states()
    finally:
        randomizer.restore()
