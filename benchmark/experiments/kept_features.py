"""Explaining the kept layer's activations (paper §4.1, Fig. 4; DESIGN §7).

In the split experiment the network is kept up to a layer (φ) and randomized above it (g).
Observation (4) of the paper: features φ does not respond to stay irrelevant for any g∘φ, so the
explanation of the *sum of φ's activations* should already show the structure that survives
randomization. For every LRP method of the job this module computes that explanation (relevance
Rₖ = aₖ put on the kept layer's activations, so it sums to Σa where the rules conserve, then the
method's own rules below the layer) and compares it, with the job's similarity metrics, to the
method's explanation of the model output: of the trained model (stage 0, seed null) and of every
(seed, stage) of the randomization plan. Rows go to the ``kept_features`` table; with
``save_maps`` the maps ('kept' and 'output') go to the ``maps`` table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionContext, AttributionMethod, reduce_channels
from ..attribution.backward import tiles
from ..attribution.lrp import LRP, build_composite
from ..config.spec import KeptActivationSpec, MetricsSpec
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer
from .context import BatchState
from .grid import axis_column, grid_index
from .maps import MapRows
from .stages import stage_walk
from .targets import needs_stage_forward, stage_targets


def layer_relevance(model: ModelBundle, method: LRP, inputs: Tensor, layer: str, chunk_size: int) -> Tensor:
    """Input relevance [N, C, H, W] of the sum of ``layer``'s output activations under ``method``'s rules.

    One forward and one backward pass per chunk, with the method's composite registered: the
    output of ``layer`` is captured in the forward pass and seeded with itself.
    """
    module = dict(model.module.named_modules())[layer]
    result = torch.zeros_like(inputs)
    for _, images in tiles(1, inputs.shape[0], chunk_size):
        captured: list[Tensor] = []
        composite = build_composite(method.spec, model, inputs)
        with composite.context(model.module), torch.inference_mode(False), torch.enable_grad():
            # registered after the composite's hooks, so it sees the output they attached to
            handle = module.register_forward_hook(lambda m, i, output: captured.append(output))
            try:
                x = inputs[images].detach().clone().requires_grad_(True)
                model.module(x)
            finally:
                handle.remove()
            if len(captured) != 1:
                raise RuntimeError(f"kept layer '{layer}' ran {len(captured)} times in one forward pass")
            (relevance,) = torch.autograd.grad(captured[0], x, grad_outputs=captured[0].detach())
        result[images] = relevance
    return result


@dataclass
class KeptFeaturesGrid:
    """values [state, method, key, image] on the host; states are (seed, stage), (None, 0) = trained."""

    states: list[tuple[int | None, int]]
    values: np.ndarray


class KeptFeatureExplanation:
    def __init__(
        self,
        spec: KeptActivationSpec,
        metrics: MetricsSpec,
        model: ModelBundle,
        methods: list,
        plan: RandomizationPlan,
        seeds: list[int],
        randomizer: Randomizer,
        target_policy: str,
        chunk_size: int,
        split_after: str | None,
    ) -> None:
        self.layer = spec.layer or split_after
        if self.layer not in dict(model.module.named_modules()):
            raise ValueError(f"kept_activation_explanation.layer: '{self.layer}' is not a module of {model.name}")
        self.positions = [i for i, m in enumerate(methods) if isinstance(m, LRP)]
        if not self.positions:
            raise ValueError("kept_activation_explanation needs at least one 'lrp' method in methods")
        self.methods: list[LRP] = [methods[i] for i in self.positions]
        self.model, self.plan, self.seeds, self.randomizer = model, plan, list(seeds), randomizer
        self.target_policy, self.chunk_size = target_policy, chunk_size
        self.comparer = MapComparer(metrics)
        self.maps = MapRows("kept_features", spec.map_size, plan.mode) if spec.save_maps else None

    def run(
        self, inputs: Tensor, image_ids: list[str], targets: Tensor, reference_maps: list[Tensor]
    ) -> KeptFeaturesGrid:
        """``reference_maps``: every job method's stage-0 maps (as the batch evaluator computed them)."""
        if self.maps is not None:
            self.maps.add_input(inputs * self.model.std + self.model.mean)
        kept = []
        for method in self.methods:
            relevance = layer_relevance(self.model, method, inputs, self.layer, self.chunk_size)
            maps = reduce_channels(relevance, method.reduction)
            kept.append(self.comparer.prepare(maps))
            self._keep(maps, method, None, 0, "kept")
        output = [reference_maps[i] for i in self.positions]
        values = [self._compare(kept, output, None, 0, targets)]
        states: list[tuple[int | None, int]] = [(None, 0)]
        with stage_walk(self.randomizer, self.plan, self.seeds) as walk:
            for seed, stage in walk:
                logits = None
                if needs_stage_forward(self.target_policy):
                    with torch.no_grad():
                        logits = self.model.module(inputs)
                target = stage_targets(self.target_policy, targets, logits)
                context = AttributionContext(image_ids, seed, stage.index, self.chunk_size, {})
                output = [
                    reduce_channels(method.attribute(self.model, inputs, target, context), method.reduction)
                    for method in self.methods
                ]
                values.append(self._compare(kept, output, seed, stage.index, target))
                states.append((seed, stage.index))
        return KeptFeaturesGrid(states, torch.stack(values).cpu().numpy())

    def _compare(self, kept: list, output: list[Tensor], seed: int | None, stage: int, targets: Tensor) -> Tensor:
        for method, maps in zip(self.methods, output):
            self._keep(maps, method, seed, stage, "output", targets)
        return torch.stack([self.comparer.compare(ref, maps)[0] for ref, maps in zip(kept, output)])

    def _keep(self, maps: Tensor, method: AttributionMethod, seed: int | None, stage: int, component: str,
              targets: Tensor | None = None) -> None:
        if self.maps is not None:
            self.maps.add(maps, method, seed, stage, component, targets)

    def evaluate(self, state: BatchState) -> dict[str, pa.Table]:
        grid = self.run(state.inputs, state.image_ids, state.targets, state.reference_maps)
        return self.tables(grid, state.image_ids, state.shard)

    def tables(self, grid: KeptFeaturesGrid, image_ids: list[str], shard: int) -> dict[str, pa.Table]:
        states, methods, keys, images = grid_index(grid.values.shape)
        count = states.size
        key_list = self.comparer.keys
        tables = {
            "kept_features": pa.table(
                {
                    "image_id": axis_column(image_ids, images, pa.string()),
                    "method": axis_column([m.id for m in self.methods], methods, pa.string()),
                    "layer": pa.array(np.full(count, self.layer, dtype=object), pa.string()),
                    "seed": axis_column([seed for seed, _ in grid.states], states, pa.int32()),
                    "stage": axis_column([stage for _, stage in grid.states], states, pa.int32()),
                    "metric": axis_column([k.metric for k in key_list], keys, pa.string()),
                    "normalization": axis_column([k.normalization for k in key_list], keys, pa.string()),
                    "absolute": axis_column([k.absolute for k in key_list], keys, pa.bool_()),
                    "value": pa.array(grid.values.ravel().astype(np.float64)),
                    "shard": pa.array(np.full(count, shard, dtype=np.int32)),
                }
            )
        }
        if self.maps is not None:
            maps = self.maps.table(image_ids, shard)
            if maps is not None:
                tables["maps"] = maps
        return tables
