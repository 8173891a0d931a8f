"""The random-logit test (Sixt et al. 2020, "When Explanations Lie"; Quantus ``RandomLogit``).

An explanation should depend on the class it explains: the trained model's map of the target is
compared with its map of another class, drawn per image. Lower similarity is better (the registered
direction of each metric applies: higher for MSE). Unlike Quantus (1-D SSIM of flattened maps,
max-normalization over the whole batch, a class generator reseeded per batch so that the draw
depends on the batch position), the maps are compared by the job's 2-D metrics with per-image
normalization, and the other class is a pure function of (image id, ``random_logit.seed``):
uniform over the classes but the target.

The other class's maps are explained in their own attribution context whose ``variant`` makes the
noise baseline draw a fresh map (an explanation that is noise whenever one is asked for), while
SmoothGrad keeps its perturbations (the class, not the draw, makes the difference). One extra
explanation per method of the trained model; no randomized state is looked at.
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionContext, AttributionMethod, Passes, keyed_rng, passes_per_state, reduce_channels
from ..config.repaired_checks import RandomLogitSpec
from ..config.spec import JobSpec
from ..metrics import MapComparer, all_finite
from .base import Experiment, Setup, register_experiment
from .check_scores import ScoreRows, comparison_keys, comparison_reasons
from .state import Batch, ModelState

VARIANT = "random_logit"


def other_classes(image_ids: list[str], targets: Tensor, classes: int, seed: int) -> Tensor:
    """One class per image [N], uniform over the ``classes`` but the target; a pure function of (image id, seed)."""
    if classes < 2:
        raise ValueError(f"random_logit: the model has {classes} class; there is no other one to explain")
    words = keyed_rng.key_words(image_ids, "random_logit", seed, device=targets.device)
    draw = words[:, 0] % (classes - 1)  # 32 random bits: the modulo bias is below 1e-6 for 1000 classes
    return draw + (draw >= targets).to(draw.dtype)


@register_experiment("random_logit", spec=RandomLogitSpec)
class RandomLogit(Experiment):
    tables = ("check_scores",)

    def __init__(self, setup: Setup) -> None:
        self.spec: RandomLogitSpec = setup.spec.section("random_logit")
        self.model, self.methods, self.chunk_size = setup.model, setup.methods, setup.chunk_size
        self.comparer = MapComparer(setup.spec.metrics)
        self.keys = comparison_keys(self.comparer)
        self.rows = ScoreRows("random_logit", self.methods)

    @classmethod
    def build(cls, setup: Setup) -> "RandomLogit":
        return cls(setup)

    @classmethod
    def observes_randomized_states(cls, spec: JobSpec) -> bool:
        return False

    def explains(self) -> list[AttributionMethod]:
        return self.methods  # the target's maps: the trained state's, shared

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=0, backward=passes_per_state(self.methods))  # the other class's maps

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.rows.clear()

    def observe(self, state: ModelState) -> None:
        if not state.trained:
            return
        assert state.logits is not None
        other = other_classes(self.batch.image_ids, state.targets, state.logits.shape[1], self.spec.seed)
        context = AttributionContext(self.batch.image_ids, state.context.seed, 0, self.chunk_size, variant=VARIANT)
        values, bounds, reasons = [], [], []
        for method in self.methods:
            target_maps = state.maps(method)
            explained = method.attribute(self.model, self.batch.inputs, other, context)
            other_maps = reduce_channels(explained, method.reduction)
            reference = self.comparer.prepare(target_maps)
            value, bound = self.comparer.compare(reference, other_maps)
            values.append(value)
            bounds.append(bound)
            reasons.append(comparison_reasons(value, reference.finite & all_finite(other_maps)))
        self.rows.add(self.keys, torch.stack(values), state.targets, bounds=torch.stack(bounds),
                      reasons=torch.stack(reasons), compared=other)

    def finish(self) -> dict[str, pa.Table]:
        table = self.rows.table(self.batch.image_ids)
        return {} if table is None else {"check_scores": table}
