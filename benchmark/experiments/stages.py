"""Walking a randomization plan: the model in each (seed, stage) state in turn, then restored.

The experiments of DESIGN §7 that look at randomized models (logits, skip path, kept features)
walk the same plan as the randomization check: cascading stages build on the previous one,
independent stages start from the trained model, every seed starts from the trained model, and
the trained model is back in place afterwards, also when an experiment fails midway.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

from ..models.randomization import RandomizationPlan, Randomizer, Stage


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
            randomizer.restore()

    try:
        yield states()
    finally:
        randomizer.restore()
