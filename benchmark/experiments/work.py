"""How much work each model state of a batch is, per image (DESIGN §10), from what the walk and
every experiment declare (``Experiment.explains_at``, ``Experiment.own_passes``): ``benchmark
bench`` counts the passes it expects with it, and a run's progress weighs each reported state
with it (the trained state draws the occlusion curves, so it is worth several randomized ones).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..attribution import AttributionMethod, Passes, passes_per_state

if TYPE_CHECKING:
    from .batch import BatchEvaluator

BACKWARD_COST = 3.0  # a forward+backward pass, in forward passes (the backward costs about two forwards)


def _union(groups: list[list[AttributionMethod]]) -> list[AttributionMethod]:
    return list({id(method): method for group in groups for method in group}.values())


def _add(a: Passes, b: Passes) -> Passes:
    return Passes(forward=a.forward + b.forward, backward=a.backward + b.backward)


def _cost(passes: Passes) -> float:
    return passes.forward + BACKWARD_COST * passes.backward


@dataclass(frozen=True)
class StatePasses:
    """Model passes per image of one batch, split by model state."""

    trained_maps: Passes  # the maps the experiments ask of the trained model
    trained: Passes  # the whole trained state: its forward, its maps, the experiments' own passes
    randomized: Passes  # every randomized state together
    randomized_states: int

    @property
    def total(self) -> Passes:
        return _add(self.trained, self.randomized)

    @property
    def costs(self) -> tuple[float, float]:
        """Work per image of the trained state and of one randomized state (mean over the plan), in
        forward-pass equivalents."""
        each = _cost(self.randomized) / self.randomized_states if self.randomized_states else 0.0
        return _cost(self.trained), each

    @property
    def explained(self) -> float:
        """The part of the trained state's work done once its maps exist (its forward and the maps;
        the rest: occlusion curves and the experiments' own passes)."""
        return (1 + BACKWARD_COST * self.trained_maps.backward) / _cost(self.trained)


def state_passes(evaluator: "BatchEvaluator") -> StatePasses:
    """Per state: the maps of the methods the experiments ask of it (once per state, however many
    ask), its forward pass where one is run, and each experiment's own passes (an experiment that
    observes every state spends ``own_passes(1)`` on the trained one, the rest on the others)."""
    walk, experiments, observers = evaluator.walk, evaluator.experiments, evaluator.randomized_observers
    states = walk.states_per_batch
    maps = Passes(forward=0, backward=passes_per_state(_union([e.explains_at(0) for e in experiments])))
    trained, randomized = _add(maps, Passes(forward=1, backward=0)), Passes(forward=0, backward=0)
    for stage in walk.plan.stages if walk.randomized else ():
        asked = _union([e.explains_at(stage.index) for e in observers])
        stage_passes = Passes(forward=int(walk.stage_forward), backward=passes_per_state(asked))
        for _ in walk.seeds:
            randomized = _add(randomized, stage_passes)
    for experiment in experiments:
        first = experiment.own_passes(1)
        trained = _add(trained, first)
        if experiment in observers and states > 1:
            every = experiment.own_passes(states)
            randomized = _add(randomized, Passes(forward=every.forward - first.forward,
                                                 backward=every.backward - first.backward))
    return StatePasses(maps, trained, randomized, states - 1)
