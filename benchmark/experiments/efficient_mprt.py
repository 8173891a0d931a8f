"""Efficient MPRT (Hedström et al. 2023, "Sanity Checks Revisited"; Quantus ``EfficientMPRT``).

Instead of comparing maps stage by stage, eMPRT asks whether an explanation becomes more
*complex* when the model is fully randomized: per image, (H(ê) − H(e)) / H(e), with H the discrete
entropy of the histogram of the map (``metrics.entropy``), e the trained model's map and ê the map
of the fully randomized model — the last stage of the job's top-down plan (its ``stage`` in the
table says which; when the plan stops short of the stem, as the paper's rules do, "fully" means
"as far as the plan goes"). Higher is better (score ``entropy_change``). A histogram over a map's
own range does not change when the map is scaled, so the score does not depend on the
normalization (its ``normalization`` is null); it does depend on signed vs absolute maps, and is
computed for each of the job's ``metrics.absolute`` settings. The bin count of a rule is evaluated
on e and used for ê too, so that both entropies count the same number of bins. H(e) = 0 (a constant
map, or one whose values all fall in one bin) gives NaN with a reason.

Only the trained and the last state's maps are asked for (shared with the other experiments);
nothing else is computed.
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionMethod
from ..config.repaired_checks import EfficientMPRTSpec
from ..metrics import ENTROPY_CHANGE, HistogramBins, histogram_entropy
from .base import Experiment, Setup, register_experiment
from .check_scores import NON_FINITE, ZERO_ENTROPY, ScoreKey, ScoreRows
from .state import Batch, ModelState


def entropy_change(trained: Tensor, randomized: Tensor) -> tuple[Tensor, Tensor]:
    """(H(ê) − H(e)) / H(e) [N] from the two entropies [N], and the reason codes of its NaNs."""
    zero = trained == 0
    value = (randomized - trained) / torch.where(zero, torch.ones_like(trained), trained)
    finite = torch.isfinite(trained) & torch.isfinite(randomized)
    value = torch.where(finite & ~zero, value, torch.full_like(value, float("nan")))
    reasons = torch.where(~finite, torch.full_like(value, NON_FINITE), torch.where(zero, torch.full_like(value, ZERO_ENTROPY), torch.zeros_like(value)))
    return value, reasons


@register_experiment("emprt", spec=EfficientMPRTSpec)
class EfficientMPRT(Experiment):
    tables = ("check_scores",)

    def __init__(self, setup: Setup) -> None:
        spec: EfficientMPRTSpec = setup.spec.section("emprt")
        if setup.plan.mode != "top_down" or not setup.plan.stages:
            raise ValueError("emprt: needs a top-down randomization plan with at least one stage (randomization.mode top_down)")
        self.bins = HistogramBins(spec.n_bins, spec.min_bins, spec.max_bins)
        self.plan, self.methods = setup.plan, setup.methods
        self.last = setup.plan.stages[-1].index
        self.absolute = [bool(a) for a in setup.spec.metrics.absolute]
        self.keys = [ScoreKey(ENTROPY_CHANGE.name, None, absolute) for absolute in self.absolute]
        self.rows = ScoreRows("emprt", self.methods)

    @classmethod
    def build(cls, setup: Setup) -> "EfficientMPRT":
        return cls(setup)

    def explains(self) -> list[AttributionMethod]:
        return self.methods

    def explains_at(self, stage: int) -> list[AttributionMethod]:
        return self.methods if stage in (0, self.last) else []

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.rows.clear()
        self.trained: list[list[tuple[Tensor, Tensor]]] = []  # [method][absolute]: (bins, H(e))

    def _versions(self, maps: Tensor) -> list[Tensor]:
        return [maps.abs() if absolute else maps for absolute in self.absolute]

    def observe(self, state: ModelState) -> None:
        if state.trained:
            for maps in state.maps_of(self.methods):
                entries = []
                for version in self._versions(maps):
                    finite = torch.isfinite(version.flatten(1)).all(dim=1)
                    bins = self.bins.counts(torch.where(finite[:, None, None], version, torch.zeros_like(version)))
                    entries.append((bins, histogram_entropy(version, bins)))
                self.trained.append(entries)
            return
        if state.index != self.last:
            return
        values, reasons = [], []
        for entries, maps in zip(self.trained, state.maps_of(self.methods)):
            pairs = [entropy_change(h, histogram_entropy(version, bins)) for (bins, h), version in zip(entries, self._versions(maps))]
            values.append(torch.stack([value for value, _ in pairs]))
            reasons.append(torch.stack([reason for _, reason in pairs]))
        self.rows.add(self.keys, torch.stack(values), state.targets, seed=state.seed, stage=state.index,
                      mode=self.plan.mode, reasons=torch.stack(reasons))

    def finish(self) -> dict[str, pa.Table]:
        table = self.rows.table(self.batch.image_ids)
        return {} if table is None else {"check_scores": table}
