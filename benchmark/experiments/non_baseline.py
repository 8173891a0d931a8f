"""The paper's §5 refinement (2): the randomization check on the non-baseline component only.

§4.2 (eq. 5–6): around a randomized residual branch, the skip connection carries an additive
component B(x) that randomization cannot change, and a linear explanation keeps it: E{f̂} = E{A(x;
θ_R)} + E{B(x)}. §5 proposes to "identify the non-baseline component of the function, and only
assess whether the explanation of that non-baseline component has been randomized (e.g. to exclude
from the explanation what passes through the skip connections)".

Per stage, the block is the residual block that contains the stage's first randomized module to run
(``kept_part``; top-down: the block whose branch this stage begins to randomize, e.g.
``layer3.1`` for ``layer3.1.conv1``; the paper's Fig. 7: ``layer4.2`` for ``layer4.2.conv2``). The
component is the LRP relevance that flows through that block's residual branch, its skip summand's
share dropped at the block's sum (``skip_path``'s split, ``rules.SelectedSum``) — computed in the
randomized state and, once per block, for the trained model; the two are compared by the job's
metrics. Where no skip connection bypasses the stage's first randomized module (the head of a
ResNet: ``fc``), nothing of the explanation is a baseline in this sense, and the whole maps are
compared (``layer`` null). LRP methods only (the split is an LRP rule); a model without residual
blocks (VGG, DenseNet) is refused: the plain randomization check already is its whole-map check.
"""

from __future__ import annotations

import pyarrow as pa
import torch

from ..attribution import AttributionMethod, Passes, reduce_channels
from ..attribution.lrp import LRP
from ..config.repaired_checks import NonBaselineSpec
from ..metrics import MapComparer, PreparedReference, all_finite
from .base import Experiment, Setup, register_experiment
from .check_scores import ScoreRows, comparison_keys, comparison_reasons
from .kept_part import first_to_run, start_order
from .skip_path import RESIDUAL, branch_relevance, enclosing_block, residual_blocks
from .state import Batch, ModelState


@register_experiment("mprt_non_baseline", spec=NonBaselineSpec)
class NonBaselineMPRT(Experiment):
    tables = ("check_scores",)

    def __init__(self, setup: Setup) -> None:
        self.methods: list[LRP] = [m for m in setup.methods if isinstance(m, LRP)]
        if not self.methods:
            raise ValueError("mprt_non_baseline: the skip/residual split is an LRP rule; add an lrp method")
        blocks = residual_blocks(setup.model)
        if not blocks:
            raise ValueError(f"mprt_non_baseline: {setup.model.name} has no residual blocks, so no skip connection "
                             "carries a baseline component; its whole-map check is the randomization check itself")
        self.model, self.plan, self.chunk_size = setup.model, setup.plan, setup.chunk_size
        order = start_order(setup.model, setup.spec.dataset.crop)
        self.blocks: dict[int, str | None] = {
            stage.index: enclosing_block(first_to_run(setup.plan.modules_at(stage.index), order, setup.model.name), blocks)
            for stage in setup.plan.stages
        }
        self.seeds = len(setup.spec.randomization.seeds)
        self.comparer = MapComparer(setup.spec.metrics)
        self.keys = comparison_keys(self.comparer)
        self.rows = ScoreRows("mprt_non_baseline", self.methods)

    @classmethod
    def build(cls, setup: Setup) -> "NonBaselineMPRT":
        return cls(setup)

    @property
    def distinct_blocks(self) -> list[str]:
        return list(dict.fromkeys(block for block in self.blocks.values() if block is not None))

    def explains(self) -> list[AttributionMethod]:
        return list(self.methods)

    def explains_at(self, stage: int) -> list[AttributionMethod]:
        """The whole maps, where a stage has no block (and of the trained model, as their reference)."""
        whole = [index for index, block in self.blocks.items() if block is None]
        return list(self.methods) if (stage == 0 and whole) or stage in whole else []

    def own_passes(self, states: int) -> Passes:
        branched = sum(block is not None for block in self.blocks.values())
        return Passes(forward=0, backward=len(self.methods) * (len(self.distinct_blocks) + self.seeds * branched))

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.rows.clear()
        self.reference: dict[str | None, list[PreparedReference]] = {}

    def _component(self, method: LRP, block: str, targets: torch.Tensor) -> torch.Tensor:
        relevance = branch_relevance(self.model, method, f"{block}.canonizer_sum", RESIDUAL, self.batch.inputs, targets,
                                     self.chunk_size)
        return reduce_channels(relevance, method.reduction)

    def observe(self, state: ModelState) -> None:
        if state.trained:
            for block in self.distinct_blocks:
                self.reference[block] = [self.comparer.prepare(self._component(m, block, state.targets)) for m in self.methods]
            if None in self.blocks.values():
                self.reference[None] = [self.comparer.prepare(maps) for maps in state.maps_of(self.methods)]
            return
        block = self.blocks[state.index]
        values, bounds, reasons = [], [], []
        for method, reference in zip(self.methods, self.reference[block]):
            maps = state.maps(method) if block is None else self._component(method, block, state.targets)
            value, bound = self.comparer.compare(reference, maps)
            values.append(value)
            bounds.append(bound)
            reasons.append(comparison_reasons(value, reference.finite & all_finite(maps)))
        self.rows.add(self.keys, torch.stack(values), state.targets, seed=state.seed, stage=state.index,
                      mode=self.plan.mode, layer=block, bounds=torch.stack(bounds), reasons=torch.stack(reasons))

    def finish(self) -> dict[str, pa.Table]:
        table = self.rows.table(self.batch.image_ids)
        return {} if table is None else {"check_scores": table}
