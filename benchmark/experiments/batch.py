"""One batch, end to end: stage-0 maps once, occlusion curves, every randomization stage.

``BatchEvaluator`` is built once per worker (it holds the model, the methods and the
randomizer) and turns a batch of images into Arrow tables with the columns of DESIGN §9.
"""

from __future__ import annotations

import pyarrow as pa
import torch

from ..attribution import AttributionContext, build_method
from ..config.spec import JobSpec
from ..data.loader import ImageBatch
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan
from .faithfulness import FaithfulnessCheck
from .randomization_check import RandomizationCheck, explain
from .targets import reference_targets

REFERENCE_SEED = 0  # stage 0 does not depend on the randomization seed


class BatchEvaluator:
    def __init__(self, spec: JobSpec, model: ModelBundle, plan: RandomizationPlan) -> None:
        self.spec, self.model, self.plan = spec, model, plan
        self.methods = [build_method(method, model) for method in spec.methods]
        self.comparer = MapComparer(spec.metrics)
        chunk = spec.runtime.chunk_size
        self.randomization = RandomizationCheck(spec.randomization, plan, model, self.methods, self.comparer, chunk)
        self.faithfulness = FaithfulnessCheck(spec.occlusion, model, self.methods, chunk)

    def evaluate(self, batch: ImageBatch, shard: int) -> dict[str, pa.Table]:
        batch = batch.to(self.model.device)
        inputs = self.model.normalize(batch.pixels)
        with torch.no_grad():
            logits = self.model.module(inputs)
        targets = reference_targets(self.spec.randomization.target, batch.labels, logits)
        context = AttributionContext(batch.image_ids, REFERENCE_SEED, 0, self.spec.runtime.chunk_size, {})
        reference_maps = explain(self.methods, self.model, inputs, targets, context)

        tables: dict[str, pa.Table] = {}
        if self.spec.occlusion.enabled:
            curves = self.faithfulness.run(batch.pixels, reference_maps, targets)
            tables["occlusion"] = self.faithfulness.table(curves, batch.image_ids, targets, shard)
        if self.spec.randomization.enabled and self.plan.stages:
            grid = self.randomization.run(inputs, batch.image_ids, targets, reference_maps)
            tables["randomization"] = self.randomization.table(grid, batch.image_ids, shard)
        return tables
