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
from typing import Literal

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionMethod, Passes, reduce_channels
from ..attribution.backward import tiles
from ..attribution.lrp import LRP, build_composite
from ..config.spec import KeptActivationSpec, MetricsSpec
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .maps import MapRows
from .state import Batch, ModelState


def layer_relevance(
    model: ModelBundle, method: LRP, inputs: Tensor, layer: str, chunk_size: int, side: Literal["output", "input"] = "output"
) -> Tensor:
    """Input relevance [N, C, H, W] of the sum of ``layer``'s output (or input) activations under ``method``'s rules.

    One forward and one backward pass per chunk, with the method's composite registered: the
    output of ``layer`` (``side='input'``: the tensor it receives, i.e. what the modules below it
    hand up) is captured in the forward pass and seeded with itself.
    """
    module = dict(model.module.named_modules())[layer]
    result = torch.zeros_like(inputs)
    for _, images in tiles(1, inputs.shape[0], chunk_size):
        captured: list[Tensor] = []
        composite = build_composite(method.spec, model, inputs)
        with composite.context(model.module), torch.inference_mode(False), torch.enable_grad():
            if side == "output":
                # registered after the composite's hooks, so it sees the output they attached to
                handle = module.register_forward_hook(lambda m, i, output: captured.append(output))
            else:
                # before the composite's hooks on the module, so it sees the tensor as the modules below made it
                handle = module.register_forward_pre_hook(lambda m, args: captured.append(args[0]), prepend=True)
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


@register_experiment("kept_activation_explanation")
class KeptFeatureExplanation(Experiment):
    tables = ("kept_features", "maps")

    def __init__(
        self,
        spec: KeptActivationSpec,
        metrics: MetricsSpec,
        model: ModelBundle,
        methods: list,
        mode: str,
        chunk_size: int,
        split_after: str | None,
    ) -> None:
        self.layer = spec.layer or split_after
        if self.layer not in dict(model.module.named_modules()):
            raise ValueError(f"kept_activation_explanation.layer: '{self.layer}' is not a module of {model.name}")
        self.methods: list[LRP] = [m for m in methods if isinstance(m, LRP)]
        if not self.methods:
            raise ValueError("kept_activation_explanation needs at least one 'lrp' method in methods")
        self.model, self.chunk_size = model, chunk_size
        self.comparer = MapComparer(metrics)
        self.maps = MapRows("kept_features", spec.map_size, mode) if spec.save_maps else None

    @classmethod
    def build(cls, setup: Setup) -> "KeptFeatureExplanation":
        spec = setup.spec
        return cls(spec.kept_activation_explanation, spec.metrics, setup.model, setup.methods, setup.plan.mode,
                   setup.chunk_size, spec.randomization.split_after)

    def explains(self) -> list[AttributionMethod]:
        return list(self.methods)

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=0, backward=len(self.methods))  # the kept layer's explanation, trained model only

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.kept: list = []
        self.states: list[tuple[int | None, int]] = []
        self.values: list[Tensor] = []
        if self.maps is not None:
            self.maps.clear()
            self.maps.add_input(batch.pixels)  # what was explained, for the figures

    def observe(self, state: ModelState) -> None:
        """The trained model: the kept layer's explanation (prepared once); every state: the methods'
        explanation of the output (the maps the state shares with the other experiments) against it."""
        if state.trained:
            for method in self.methods:
                relevance = layer_relevance(self.model, method, self.batch.inputs, self.layer, self.chunk_size)
                maps = reduce_channels(relevance, method.reduction)
                self.kept.append(self.comparer.prepare(maps))
                self._keep(maps, method, None, 0, "kept")
        self.values.append(self._compare(self.kept, state.maps_of(self.methods), state.seed, state.index, state.targets))
        self.states.append((state.seed, state.index))

    def finish(self) -> dict[str, pa.Table]:
        grid = KeptFeaturesGrid(self.states, torch.stack(self.values).cpu().numpy())
        return self.rows(grid, self.batch.image_ids)

    def _compare(self, kept: list, output: list[Tensor], seed: int | None, stage: int, targets: Tensor) -> Tensor:
        for method, maps in zip(self.methods, output):
            self._keep(maps, method, seed, stage, "output", targets)
        return torch.stack([self.comparer.compare(ref, maps)[0] for ref, maps in zip(kept, output)])

    def _keep(self, maps: Tensor, method: AttributionMethod, seed: int | None, stage: int, component: str,
              targets: Tensor | None = None) -> None:
        if self.maps is not None:
            self.maps.add(maps, method, seed, stage, component, targets)

    def rows(self, grid: KeptFeaturesGrid, image_ids: list[str]) -> dict[str, pa.Table]:
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
                }
            )
        }
        if self.maps is not None:
            maps = self.maps.table(image_ids)
            if maps is not None:
                tables["maps"] = maps
        return tables
