"""One batch, end to end: the model states walked once, every enabled experiment fed each state.

``BatchEvaluator`` is built once per worker (it holds the model, the methods, the randomizer and
the experiments) and turns a batch of images into Arrow tables with the columns of DESIGN §9
(the writer adds the shard and partition columns). It knows no experiment by name: the job's
enabled experiments come from the registry (``experiments.base``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass

import pyarrow as pa
import torch

from ..attribution import build_method
from ..attribution.gradient import INPUT_GRADIENT
from ..config.spec import JobSpec
from ..data.loader import ImageBatch
from ..models.bundle import ModelBundle
from ..models.chunking import resolve_chunk_size
from ..models.tuning import fallback_settings
from ..models.randomization import RandomizationPlan
from ..profiling import span
from .base import Setup, enabled_experiments, observes_randomized
from .map_health import DegenerateMaps
from .state import Batch
from .walk import StateProgress, StateWalk
from .work import state_passes


@dataclass
class WalkCounts:
    """What the evaluator did so far (``benchmark bench``): batches, model states, randomizations."""

    batches: int = 0
    states: int = 0
    randomizations: int = 0


class BatchEvaluator:
    def __init__(self, spec: JobSpec, model: ModelBundle, plan: RandomizationPlan) -> None:
        self.spec, self.model, self.plan = spec, model, plan
        self.methods = [build_method(method, model) for method in spec.methods]
        kinds = enabled_experiments(spec)
        randomized = bool(plan.stages) and observes_randomized(spec)
        # a run's workers get every execution setting resolved (``engine.tuning``); elsewhere 'auto' falls back
        reuse = randomized and fallback_settings(spec.runtime, model.device.type).reuse_bottom_forward
        # graphs of the recorded bottom kept per batch: the plain pass and each method with (lean) rules
        retained = spec.runtime.batch_size * (1 + sum(m.recorded_graphs for m in self.methods)) if reuse else 0
        self.chunk_size = resolve_chunk_size(spec.runtime.chunk_size, model, spec.dataset.crop, retained)
        setup = Setup(spec, model, plan, self.methods, self.chunk_size)
        self.experiments = [kind.build(setup) for kind in kinds]
        self.randomized_observers = [e for e in self.experiments if e.observes_randomized_states(spec)]
        stage_logits = any(e.stage_logits for e in self.randomized_observers) or (
            any(e.explained_logits for e in self.randomized_observers) and not self._passes_give_logits()
        )
        self.walk = StateWalk(
            model, plan, spec.randomization.seeds, spec.randomization.target, self.chunk_size,
            randomized=randomized, stage_logits=stage_logits, reuse=reuse,
        )
        self.counts = WalkCounts()
        passes = state_passes(self)
        self.states = self.walk.states_per_batch  # model states per image, for progress reports
        self.costs = passes.costs  # work of the trained state and of a randomized one
        self.explained = passes.explained  # of the trained state, once its maps exist (before its occlusion)
        self.trained_methods = frozenset(m.id for e in self.experiments for m in e.explains_at(0))
        self.degenerate_maps = DegenerateMaps()  # the trained model's maps, per shard (the run summary warns)

    def _passes_give_logits(self) -> bool:
        """Whether in every randomized state the plain gradient pass at the inputs (gradient,
        gradient×input) is made before the first experiment that reads the explained logits looks
        at the state: then they come from that pass's forward, and the state needs none of its own."""
        readers = [i for i, e in enumerate(self.randomized_observers) if e.explained_logits]
        earlier = self.randomized_observers[: readers[0]] if readers else []
        for stage in self.plan.stages:
            methods = [m for e in earlier for m in e.explains_at(stage.index)]
            if not any(getattr(m.passes(), "shared", None) == INPUT_GRADIENT for m in methods):
                return False
        return True

    def evaluate(
        self,
        batch: ImageBatch,
        save_maps: frozenset[str] = frozenset(),
        progress: Callable[[float], None] | None = None,
    ) -> dict[str, pa.Table]:
        """The batch's tables; ``save_maps``: ids of images whose arrays go to the tables too (``maps``, ``logits``);
        ``progress(units)`` hears how many image-states are done, once per model state (the trained one in
        two parts: its maps, then the rest, e.g. its occlusion curves); a batch's units add up to
        images x ``self.states``."""
        batch = self._batch(batch, save_maps)
        for experiment in self.experiments:
            experiment.start(batch)
        randomizations = self.walk.randomizer.randomizations
        counter = None
        if progress is not None:
            counter = StateProgress(len(batch), self.states, progress, self.explained, self.trained_methods)
        with closing(self.walk.states(batch, self._trained_forward(), counter)) as states:
            for state in states:
                for experiment in self.experiments if state.trained else self.randomized_observers:
                    with span(f"experiment {experiment.section}: the rest"):
                        experiment.observe(state)
                if state.trained:
                    self.degenerate_maps.add(state.computed_maps())
                self.counts.states += 1
        self.counts.batches += 1
        self.counts.randomizations += self.walk.randomizer.randomizations - randomizations
        tables: dict[str, pa.Table] = {}
        for experiment in self.experiments:
            with span(f"experiment {experiment.section}: the rest"):
                finished = experiment.finish()
            for name, table in finished.items():
                tables[name] = pa.concat_tables([tables[name], table]) if name in tables else table
        return tables

    def _batch(self, images: ImageBatch, save_maps: frozenset[str]) -> Batch:
        with span("host transfers (images to the device)"):
            images = images.to(self.model.device)
        saved = [i for i, image_id in enumerate(images.image_ids) if image_id in save_maps]
        return Batch(
            images.image_ids,
            images.pixels,
            self.model.normalize(images.pixels),
            images.labels,
            torch.tensor(saved, dtype=torch.long, device=self.model.device) if saved else None,
        )

    @contextmanager
    def _trained_forward(self) -> Iterator[None]:
        """Every experiment's hooks on the trained model's forward pass."""
        with ExitStack() as hooks:
            for experiment in self.experiments:
                hooks.enter_context(experiment.trained_forward())
            yield
