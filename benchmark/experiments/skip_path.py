"""Skip connection vs weighted path of a residual block (paper §4.2, Fig. 7; DESIGN §7).

The block's residual sum, after canonization a zennit ``Sum`` over stack([skip, residual], -1),
normally splits its relevance between the two summands by the ``Norm`` rule. Here one backward
pass keeps only the skip summand's share (``rules.SelectedSum``) and one only the residual
branch's; every rule is linear in the relevance it receives, so the two input maps add up to the
full LRP explanation. Both are computed for the trained model (stage 0) and every (seed, stage)
of the randomization plan (in the paper: ResNet-34 with ``layer4.2.conv2`` randomized), for
every LRP method of the job.

Per image, method, seed, stage and component ('skip', 'residual', 'total') the ``skip_path``
table holds the relevance (sum of the input map), its share of the total relevance, and, for
randomized stages, SSIM and Spearman correlation with the same component of the trained model
(signed maps, second-moment normalization, the job's SSIM settings): the paper's observation is
that the skip part barely changes while the residual part does. The maps themselves go to the
``maps`` table when ``save_maps`` is set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from zennit.core import Composite

from ..attribution import reduce_channels
from ..attribution.backward import AtInput, path_gradient
from ..attribution.canonizers import has_identity_skip
from ..attribution.lrp import CANONIZERS, LRP, build_composite
from ..attribution.rules import SelectedSum
from ..config.spec import MetricsSpec, SkipPathSpec
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer
from .context import BatchState
from .grid import axis_column, grid_index
from .maps import MapRows
from .stages import stage_walk
from .targets import needs_stage_forward, stage_targets

COMPONENTS = ("skip", "residual", "total")
SKIP, RESIDUAL = 0, 1  # positions in the canonized stack([skip, residual], dim=-1)


def residual_sum(model: ModelBundle, block: str) -> str:
    """Name of the canonized ``Sum`` module of ``block``; refuses blocks without a residual sum."""
    modules = dict(model.module.named_modules())
    if block not in modules:
        raise ValueError(f"skip_path.block: '{block}' is not a module of {model.name}")
    if model.family not in CANONIZERS:
        raise ValueError(f"skip_path: no canonizer for {model.name} (family '{model.family}')")
    composite = Composite(canonizers=CANONIZERS[model.family]())
    with composite.context(model.module):
        names = {name for name, _ in model.module.named_modules()}
    name = f"{block}.canonizer_sum"
    if name not in names or (model.family == "efficientnet" and not has_identity_skip(modules[block])):
        raise ValueError(
            f"skip_path.block: '{block}' of {model.name} has no residual sum (a ResNet block 'layerX.Y' or an "
            "EfficientNet block with an identity skip)"
        )
    return name


def select_summand(composite: Composite, sum_name: str, index: int) -> Composite:
    """The composite with the rule of ``sum_name`` replaced by ``SelectedSum(index)`` (in place)."""
    base = composite.module_map

    def module_map(ctx: dict, name: str, module: torch.nn.Module):
        return SelectedSum(index) if name == sum_name else base(ctx, name, module)

    composite.module_map = module_map
    return composite


@dataclass
class SkipPathGrid:
    """relevance, ssim, spearman: [state, method, component, image] on the host."""

    states: list[tuple[int | None, int]]  # (seed, stage); (None, 0) is the trained model
    relevance: np.ndarray
    ssim: np.ndarray
    spearman: np.ndarray


class SkipPathDecomposition:
    def __init__(
        self,
        spec: SkipPathSpec,
        metrics: MetricsSpec,
        model: ModelBundle,
        methods: list,
        plan: RandomizationPlan,
        seeds: list[int],
        randomizer: Randomizer,
        target_policy: str,
        chunk_size: int,
    ) -> None:
        self.spec, self.model, self.plan, self.seeds = spec, model, plan, list(seeds)
        self.randomizer, self.target_policy, self.chunk_size = randomizer, target_policy, chunk_size
        self.methods: list[LRP] = [m for m in methods if isinstance(m, LRP)]
        if not self.methods:
            raise ValueError("skip_path needs at least one 'lrp' method in methods (the split is an LRP rule)")
        self.sum_name = residual_sum(model, spec.block)
        similarity = MetricsSpec(
            similarities=["ssim", "spearman"], normalizations=["second_moment"], absolute=[False], ssim=metrics.ssim
        )
        self.comparer = MapComparer(similarity)
        self.maps = MapRows("skip_path", spec.map_size, plan.mode) if spec.save_maps else None

    def components(self, method: LRP, inputs: Tensor, targets: Tensor) -> Tensor:
        """Input relevance through the skip and through the residual branch, [2, N, C, H, W]."""
        parts = []
        for index in (SKIP, RESIDUAL):
            composite = select_summand(build_composite(method.spec, self.model, inputs), self.sum_name, index)
            output = method.spec.output_relevance
            with composite.context(self.model.module):
                parts.append(path_gradient(self.model.module, AtInput(inputs), targets, self.chunk_size, output=output))
        return torch.stack(parts)

    def _state(self, inputs: Tensor, targets: Tensor, seed: int | None, stage: int, reference: list | None):
        relevance, ssim, spearman, prepared = [], [], [], []
        for m, method in enumerate(self.methods):
            skip, residual = self.components(method, inputs, targets)
            total = skip + residual
            relevance.append(torch.stack([part.sum(dim=(1, 2, 3)) for part in (skip, residual, total)]))
            maps = [reduce_channels(part, method.reduction) for part in (skip, residual, total)]
            if self.maps is not None:
                for component, part in zip(COMPONENTS, maps):
                    self.maps.add(part, method, seed, stage, component, targets)
            if reference is None:
                prepared.append([self.comparer.prepare(part) for part in maps])
                nan = torch.full((3, inputs.shape[0]), float("nan"), dtype=torch.float64, device=inputs.device)
                ssim.append(nan)
                spearman.append(nan)
            else:
                values = torch.stack([self.comparer.compare(ref, part)[0] for ref, part in zip(reference[m], maps)])
                ssim.append(values[:, 0])
                spearman.append(values[:, 1])
        return torch.stack(relevance), torch.stack(ssim), torch.stack(spearman), prepared

    def run(self, inputs: Tensor, targets: Tensor) -> SkipPathGrid:
        if self.maps is not None:
            self.maps.add_input(inputs * self.model.std + self.model.mean)
        states: list[tuple[int | None, int]] = [(None, 0)]
        relevance, ssim, spearman, reference = self._state(inputs, targets, None, 0, None)
        results = [(relevance, ssim, spearman)]
        with stage_walk(self.randomizer, self.plan, self.seeds) as walk:
            for seed, stage in walk:
                logits = None
                if needs_stage_forward(self.target_policy):
                    with torch.no_grad():
                        logits = self.model.module(inputs)
                target = stage_targets(self.target_policy, targets, logits)
                results.append(self._state(inputs, target, seed, stage.index, reference)[:3])
                states.append((seed, stage.index))
        relevance, ssim, spearman = (torch.stack(column).cpu().numpy() for column in zip(*results))
        return SkipPathGrid(states, relevance.astype(np.float64), ssim.astype(np.float64), spearman.astype(np.float64))

    def evaluate(self, state: BatchState) -> dict[str, pa.Table]:
        return self.tables(self.run(state.inputs, state.targets), state.image_ids, state.shard)

    def tables(self, grid: SkipPathGrid, image_ids: list[str], shard: int) -> dict[str, pa.Table]:
        states, methods, components, images = grid_index(grid.relevance.shape)
        count = states.size
        total = grid.relevance[:, :, 2:3, :]
        with np.errstate(divide="ignore", invalid="ignore"):
            share = grid.relevance / total
        tables = {
            "skip_path": pa.table(
                {
                    "image_id": axis_column(image_ids, images, pa.string()),
                    "method": axis_column([m.id for m in self.methods], methods, pa.string()),
                    "block": pa.array(np.full(count, self.spec.block, dtype=object), pa.string()),
                    "seed": axis_column([seed for seed, _ in grid.states], states, pa.int32()),
                    "stage": axis_column([stage for _, stage in grid.states], states, pa.int32()),
                    "component": axis_column(COMPONENTS, components, pa.string()),
                    "relevance": pa.array(grid.relevance.ravel()),
                    "share": pa.array(share.ravel()),
                    "ssim": _nullable(grid.ssim.ravel()),
                    "spearman": _nullable(grid.spearman.ravel()),
                    "shard": pa.array(np.full(count, shard, dtype=np.int32)),
                }
            )
        }
        if self.maps is not None:
            maps = self.maps.table(image_ids, shard)
            if maps is not None:
                tables["maps"] = maps
        return tables


def _nullable(values: np.ndarray) -> pa.Array:
    """NaN → null: the trained model has no similarity to itself to report."""
    return pa.array(values, pa.float64(), mask=np.isnan(values))
