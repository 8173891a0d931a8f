"""One batch, end to end: stage-0 maps once, occlusion curves, every randomization stage, and the
further experiments of DESIGN §7 that the job enables.

``BatchEvaluator`` is built once per worker (it holds the model, the methods and the
randomizer) and turns a batch of images into Arrow tables with the columns of DESIGN §9.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable

import numpy as np
import pyarrow as pa
import torch

from ..attribution import AttributionContext, build_method
from ..attribution.reuse import BottomReuse
from ..config.spec import JobSpec
from ..data.loader import ImageBatch
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from ..models.chunking import resolve_chunk_size
from ..models.randomization import RandomizationPlan
from .activations import ActivationStatistics
from .context import BatchState
from .faithfulness import FaithfulnessCheck
from .kept_features import KeptFeatureExplanation
from .logits import LogitPreservation
from .randomization_check import RandomizationCheck, RandomizationGrid, explain
from .saved_maps import maps_table
from .skip_path import SkipPathDecomposition
from .stages import StateCounter, counting_states, state_done, state_part, walked_states
from .targets import reference_targets
from .work import explanation_share, state_costs

REFERENCE_SEED = 0  # stage 0 does not depend on the randomization seed


class BatchEvaluator:
    def __init__(self, spec: JobSpec, model: ModelBundle, plan: RandomizationPlan) -> None:
        self.spec, self.model, self.plan = spec, model, plan
        self.methods = [build_method(method, model) for method in spec.methods]
        self.comparer = MapComparer(spec.metrics)
        self.randomizing = spec.randomization.enabled and bool(plan.stages)
        self.reuse_forward = self.randomizing and spec.runtime.reuse_bottom_forward
        retained = spec.runtime.batch_size if self.reuse_forward else 0
        self.states = walked_states(spec, len(plan.stages))  # model states per image, for progress reports
        self.costs = state_costs(spec, self.methods)  # work of the trained state and of a randomized one
        self.explained = explanation_share(spec, self.methods)  # of the trained state, before its occlusion
        self.chunk_size = chunk = resolve_chunk_size(spec.runtime.chunk_size, model, spec.dataset.crop, retained)
        self.randomization = RandomizationCheck(spec.randomization, plan, model, self.methods, self.comparer, chunk)
        self.faithfulness = FaithfulnessCheck(spec.occlusion, model, self.methods, chunk)
        # DESIGN §7: each walks the same plan with the same (shared, cached) randomizer
        r, randomizer = spec.randomization, self.randomization.randomizer
        walk = (plan, r.seeds, randomizer)
        self.activations = ActivationStatistics(spec.activations, model) if spec.activations.enabled else None
        self.experiments = [self.activations] if self.activations else []
        if spec.logits.enabled:
            self.experiments.append(LogitPreservation(model, *walk))
        if spec.skip_path.enabled:
            self.experiments.append(
                SkipPathDecomposition(spec.skip_path, spec.metrics, model, self.methods, *walk, r.target, chunk)
            )
        if spec.kept_activation_explanation.enabled:
            kept = spec.kept_activation_explanation
            self.experiments.append(
                KeptFeatureExplanation(kept, spec.metrics, model, self.methods, *walk, r.target, chunk, r.split_after)
            )

    def evaluate(
        self,
        batch: ImageBatch,
        shard: int,
        save_maps: frozenset[str] = frozenset(),
        progress: Callable[[float], None] | None = None,
    ) -> dict[str, pa.Table]:
        """The batch's tables; ``save_maps``: ids of images whose maps go to the ``maps`` table too;
        ``progress(units)`` says how many image-states are done, once per model state (the trained
        one in two parts: explained, then its occlusion curves); a batch's units add up to
        images × ``self.states``."""
        counter = StateCounter(len(batch), self.states, progress)
        with counting_states(counter):
            tables = self._evaluate(batch, shard, save_maps)
        counter.finish()
        return tables

    def _evaluate(self, batch: ImageBatch, shard: int, save_maps: frozenset[str]) -> dict[str, pa.Table]:
        batch = batch.to(self.model.device)
        kept = [i for i, image_id in enumerate(batch.image_ids) if image_id in save_maps]
        keep = torch.tensor(kept, dtype=torch.long, device=self.model.device) if kept else None
        inputs = self.model.normalize(batch.pixels)
        with torch.no_grad(), (self.activations.capture() if self.activations else nullcontext()):
            logits = self.model.module(inputs)
        targets = reference_targets(self.spec.randomization.target, batch.labels, logits)
        reuse = BottomReuse(inputs) if self.reuse_forward else None
        stage_reuse = reuse.at(set()) if reuse is not None else None
        context = AttributionContext(batch.image_ids, REFERENCE_SEED, 0, self.chunk_size, {}, stage_reuse)
        reference_maps = explain(self.methods, self.model, inputs, targets, context)
        if self.spec.occlusion.enabled:
            state_part(self.explained)  # the curves below take most of the trained state's time

        tables: dict[str, pa.Table] = {}
        if self.spec.occlusion.enabled:
            curves = self.faithfulness.run(batch.pixels, reference_maps, targets)
            tables["occlusion"] = self.faithfulness.table(curves, batch.image_ids, targets, shard)
        state_done()  # the trained model
        grid = None
        if self.randomizing:
            grid = self.randomization.run(inputs, batch.image_ids, targets, reference_maps, keep, reuse)
            tables["randomization"] = self.randomization.table(grid, batch.image_ids, shard)
        if reuse is not None:
            reuse.release()
        if keep is not None:
            tables["maps"] = self._maps(batch, kept, keep, reference_maps, targets, grid, shard)
        state = BatchState(batch.image_ids, inputs, targets, logits, reference_maps, shard, keep)
        for experiment in self.experiments:
            for name, table in experiment.evaluate(state).items():
                tables[name] = pa.concat_tables([tables[name], table]) if name in tables else table
        return tables

    def _maps(
        self,
        batch: ImageBatch,
        kept: list[int],
        keep: torch.Tensor,
        reference_maps: list[torch.Tensor],
        targets: torch.Tensor,
        grid: RandomizationGrid | None,
        shard: int,
    ) -> pa.Table:
        """The ``maps`` rows of the kept images (their stage maps were kept by the randomization check)."""

        def host(tensor: torch.Tensor) -> np.ndarray:
            return tensor.index_select(0, keep).cpu().numpy()

        return maps_table(
            [batch.image_ids[i] for i in kept],
            pixels=host(batch.pixels.float()),
            reference=np.stack([host(maps.float()) for maps in reference_maps]),
            reference_targets=host(targets),
            stage_maps=None if grid is None else grid.maps,
            stage_targets=None if grid is None else grid.targets[:, :, kept],
            methods=self.methods,
            seeds=list(self.spec.randomization.seeds),
            stages=[stage.index for stage in self.plan.stages],
            mode=self.plan.mode,
            shard=shard,
        )
