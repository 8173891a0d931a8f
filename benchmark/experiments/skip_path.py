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

from ..attribution import Passes, reduce_channels
from ..attribution.backward import AtInput, path_gradient
from ..attribution.canonizers import has_identity_skip
from ..attribution.lean_rules import lean_rule
from ..attribution.lrp import CANONIZERS, LRP, build_composite
from ..attribution.rules import SelectedSum
from ..config.spec import MetricsSpec, SkipPathSpec
from ..metrics import MapComparer
from ..models.bundle import ModelBundle
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index
from .maps import MapRows
from .state import Batch, ModelState

COMPONENTS = ("skip", "residual", "total")
SIMILARITIES = ("ssim", "spearman")  # the table's similarity columns (registered metrics)
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


def residual_blocks(model: ModelBundle) -> set[str]:
    """The blocks whose residual sum the model's canonizer exposes as ``<block>.canonizer_sum`` (ResNet
    blocks; EfficientNet blocks with an identity skip); empty for models without skip connections."""
    if model.family not in CANONIZERS:
        return set()
    composite = Composite(canonizers=CANONIZERS[model.family]())
    with composite.context(model.module):
        names = [name for name, _ in model.module.named_modules()]
    modules = dict(model.module.named_modules())
    blocks = {name.removesuffix(".canonizer_sum") for name in names if name.endswith(".canonizer_sum")}
    return {block for block in blocks if model.family != "efficientnet" or has_identity_skip(modules[block])}


def enclosing_block(module: str, blocks: set[str]) -> str | None:
    """The innermost of ``blocks`` that contains ``module`` (by name), or None."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in blocks:
            return ".".join(parts[:end])
    return None


def branch_relevance(
    model: ModelBundle, method: LRP, sum_name: str, index: int, inputs: Tensor, targets: Tensor, chunk_size: int
) -> Tensor:
    """Input relevance [N, C, H, W] of ``method`` that flows through summand ``index`` (SKIP or RESIDUAL) of
    the residual sum ``sum_name`` only: one backward pass per chunk, the other summand's share dropped."""
    composite = select_summand(build_composite(method.spec, model, inputs), sum_name, index)
    with composite.context(model.module):
        return path_gradient(model.module, AtInput(inputs), targets, chunk_size, output=method.spec.output_relevance)


def select_summand(composite: Composite, sum_name: str, index: int) -> Composite:
    """The composite with the rule of ``sum_name`` replaced by ``SelectedSum(index)`` (in place)."""
    base = composite.module_map

    def module_map(ctx: dict, name: str, module: torch.nn.Module):
        return lean_rule(SelectedSum(index)) if name == sum_name else base(ctx, name, module)

    composite.module_map = module_map
    return composite


@dataclass
class SkipPathGrid:
    """relevance, ssim, spearman: [state, method, component, image] on the host."""

    states: list[tuple[int | None, int]]  # (seed, stage); (None, 0) is the trained model
    relevance: np.ndarray
    ssim: np.ndarray
    spearman: np.ndarray


@register_experiment("skip_path")
class SkipPathDecomposition(Experiment):
    tables = ("skip_path", "maps")

    def __init__(self, spec: SkipPathSpec, metrics: MetricsSpec, model: ModelBundle, methods: list, mode: str,
                 chunk_size: int) -> None:
        self.spec, self.model, self.chunk_size = spec, model, chunk_size
        self.methods: list[LRP] = [m for m in methods if isinstance(m, LRP)]
        if not self.methods:
            raise ValueError("skip_path needs at least one 'lrp' method in methods (the split is an LRP rule)")
        self.sum_name = residual_sum(model, spec.block)
        similarity = MetricsSpec(
            similarities=list(SIMILARITIES), normalizations=["second_moment"], absolute=[False], ssim=metrics.ssim
        )
        self.comparer = MapComparer(similarity)
        self.maps = MapRows("skip_path", spec.map_size, mode) if spec.save_maps else None

    @classmethod
    def build(cls, setup: Setup) -> "SkipPathDecomposition":
        spec = setup.spec
        return cls(spec.skip_path, spec.metrics, setup.model, setup.methods, setup.plan.mode, setup.chunk_size)

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=0, backward=2 * len(self.methods) * states)  # skip and residual part, per state

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.states: list[tuple[int | None, int]] = []
        self.results: list[tuple[Tensor, Tensor, Tensor]] = []
        self.reference: list | None = None
        if self.maps is not None:
            self.maps.clear()
            self.maps.add_input(batch.pixels)  # what was explained, for the figures

    def observe(self, state: ModelState) -> None:
        relevance, ssim, spearman, prepared = self._state(
            self.batch.inputs, state.targets, state.seed, state.index, self.reference
        )
        if state.trained:
            self.reference = prepared
        self.results.append((relevance, ssim, spearman))
        self.states.append((state.seed, state.index))

    def finish(self) -> dict[str, pa.Table]:
        relevance, ssim, spearman = (torch.stack(column).cpu().numpy() for column in zip(*self.results))
        grid = SkipPathGrid(
            self.states, relevance.astype(np.float64), ssim.astype(np.float64), spearman.astype(np.float64)
        )
        return self.rows(grid, self.batch.image_ids)

    def components(self, method: LRP, inputs: Tensor, targets: Tensor) -> Tensor:
        """Input relevance through the skip and through the residual branch, [2, N, C, H, W]."""
        return torch.stack([
            branch_relevance(self.model, method, self.sum_name, index, inputs, targets, self.chunk_size)
            for index in (SKIP, RESIDUAL)
        ])

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

    def rows(self, grid: SkipPathGrid, image_ids: list[str]) -> dict[str, pa.Table]:
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
                }
            )
        }
        if self.maps is not None:
            maps = self.maps.table(image_ids)
            if maps is not None:
                tables["maps"] = maps
        return tables


def _nullable(values: np.ndarray) -> pa.Array:
    """NaN → null: the trained model has no similarity to itself to report."""
    return pa.array(values, pa.float64(), mask=np.isnan(values))
