"""The paper's §5 refinement (1): the randomization check on the features the model is not invariant to.

§4.1 (eq. 4): if the kept part φ of a randomized model g∘φ does not respond to an input feature,
no g can, and a faithful explanation gives it no relevance before or after randomization — a
similarity the check should not count against the method. §5 proposes to "only measure change w.r.t.
input features to which the model is not invariant to (such features can be identified by
attributing intermediate-layer activations to the input layer and retaining only input features
with non-zero attribution scores)".

Per stage, φ ends where ``kept_part`` says (split mode: ``split_after``'s output; otherwise the
input of the stage's first randomized module). φ is the trained bottom in every randomized state,
so its explanation is computed once per batch, on the trained model: the explainer's (an LRP method
of the job, ``mprt_invariant_mask.explainer``, default the first) relevance of the sum of φ's output
activations, as ``kept_features`` computes it for Fig. 4. The mask keeps the pixels whose relevance
(max |.| over channels) is non-zero — above ``tolerance`` × the image's largest — and its coverage
(the kept fraction) is recorded with every row. Every method's trained and randomized maps are then
compared by the job's metrics on the masked pixels only (``metrics.masked``: normalization, data
range, SSIM windows fully inside the mask, MSE and Spearman over the mask).
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionMethod, Passes
from ..attribution.lrp import LRP
from ..config.repaired_checks import InvariantMaskSpec
from ..metrics import MapComparer, all_finite
from .base import Experiment, Setup, register_experiment
from .check_scores import FEW_PIXELS, NON_FINITE, UNDEFINED_ON_MASK, ScoreRows, comparison_keys
from .kept_features import layer_relevance
from .kept_part import KeptEnd, kept_ends
from .state import Batch, ModelState


def relevance_mask(relevance: Tensor, tolerance: float) -> Tensor:
    """[N, H, W] bool: pixels whose |relevance| (max over channels of [N, C, H, W]) exceeds ``tolerance``
    × the image's largest (any non-zero one for tolerance 0)."""
    strength = relevance.abs().amax(dim=1)
    peak = strength.flatten(1).amax(dim=1).view(-1, 1, 1)
    return (strength > tolerance * peak) & (strength > 0)


def masked_reasons(values: Tensor, finite: Tensor, mask: Tensor) -> Tensor:
    """Reason codes [K, N] of masked comparison values [K, N]."""
    pixels = mask.flatten(1).sum(dim=1).expand_as(values)
    code = torch.where(pixels < 2, torch.full_like(values, FEW_PIXELS), torch.full_like(values, UNDEFINED_ON_MASK))
    code = torch.where(finite.expand_as(values), code, torch.full_like(values, NON_FINITE))
    return torch.where(torch.isnan(values), code, torch.zeros_like(values)).to(torch.int8)


@register_experiment("mprt_invariant_mask", spec=InvariantMaskSpec)
class InvariantMaskMPRT(Experiment):
    tables = ("check_scores",)

    def __init__(self, setup: Setup) -> None:
        spec: InvariantMaskSpec = setup.spec.section("mprt_invariant_mask")
        lrp = [m for m in setup.methods if isinstance(m, LRP)]
        if not lrp:
            raise ValueError("mprt_invariant_mask: the mask is an LRP explanation of the kept layer's activations; add an lrp method")
        chosen = [m for m in lrp if m.id == spec.explainer] if spec.explainer else lrp[:1]
        if not chosen:
            raise ValueError(f"mprt_invariant_mask.explainer: '{spec.explainer}' is not an LRP method of this job "
                             f"({', '.join(m.id for m in lrp)})")
        self.explainer, self.tolerance = chosen[0], spec.tolerance
        self.model, self.plan, self.methods, self.chunk_size = setup.model, setup.plan, setup.methods, setup.chunk_size
        self.comparer = MapComparer(setup.spec.metrics)
        unmasked = [name for name, m in self.comparer.metrics.items() if not m.masked]
        if unmasked:
            raise ValueError(f"mprt_invariant_mask: no masked version of the metric(s) {', '.join(unmasked)} "
                             "(Metric.compare_masked); leave them out of metrics.similarities or this check off")
        self.keys = comparison_keys(self.comparer)
        self.ends = kept_ends(setup.model, setup.plan, setup.spec.randomization.split_after, setup.spec.dataset.crop)
        self.rows = ScoreRows("mprt_invariant_mask", self.methods)

    @classmethod
    def build(cls, setup: Setup) -> "InvariantMaskMPRT":
        return cls(setup)

    def explains(self) -> list[AttributionMethod]:
        return self.methods

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=0, backward=len(set(self.ends.values())))  # φ's explanation per distinct end, trained model

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.rows.clear()
        self.masks: dict[KeptEnd, Tensor] = {}
        self.reference: list[Tensor] = []

    def observe(self, state: ModelState) -> None:
        if state.trained:
            for end in dict.fromkeys(self.ends.values()):
                relevance = layer_relevance(self.model, self.explainer, self.batch.inputs, end.module, self.chunk_size, end.side)
                self.masks[end] = relevance_mask(relevance, self.tolerance)
            self.reference = state.maps_of(self.methods)
            return
        end = self.ends[state.index]
        mask = self.masks[end]
        values, reasons = [], []
        for reference, maps in zip(self.reference, state.maps_of(self.methods)):
            value = self.comparer.compare_masked(reference, maps, mask)
            values.append(value)
            reasons.append(masked_reasons(value, all_finite(reference) & all_finite(maps), mask))
        coverage = mask.flatten(1).to(torch.float64).mean(dim=1)
        self.rows.add(self.keys, torch.stack(values), state.targets, seed=state.seed, stage=state.index,
                      mode=self.plan.mode, layer=end.label, reasons=torch.stack(reasons), coverage=coverage)

    def finish(self) -> dict[str, pa.Table]:
        table = self.rows.table(self.batch.image_ids)
        return {} if table is None else {"check_scores": table}
