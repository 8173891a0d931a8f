"""Smooth MPRT (Hedström et al. 2023, "Sanity Checks Revisited"; Quantus ``SmoothMPRT``).

MPRT's similarities are lowered by noise in an explanation (the paper's §3: Theorem 1). sMPRT
"denoises" first: in every model state a method's explanation is the mean of its maps of N noisy
copies x + ε of the input, ε ~ N(0, σ²), σ = noise_magnitude · (max(x) − min(x)) per image in the
model's input space, the last copy noise-free (as Quantus does), and the smoothed maps of each
randomized state are compared with the trained model's smoothed maps by the job's similarity
metrics, normalizations and signed/absolute settings — at every stage of the plan, like MPRT.

The copies of a batch are cut into blocks of at most ``chunk_size`` inputs (``backward.tiles``);
each block is made once per model state and explained by every method of the job in one
attribution context (gradient and gradient×input share their pass). The noise is a pure function of
(image id, copy index, ``smprt.seed``) (``attribution.keyed_rng``), the same in every model state
(common random numbers: a state-to-state difference comes from the model, not the draw). Each copy
is its own explanation request: methods with their own randomness (the noise baseline, SmoothGrad)
draw it per copy, keyed by ``<image id>#smprt<copy>``.
"""

from __future__ import annotations

import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionContext, Passes, passes_per_state, reduce_channels
from ..attribution.backward import tiles
from ..attribution.paths import GaussianCloud
from ..config.repaired_checks import SmoothMPRTSpec
from ..metrics import MapComparer, PreparedReference, all_finite
from .base import Experiment, Setup, register_experiment
from .check_scores import ScoreRows, comparison_keys, comparison_reasons
from .state import Batch, ModelState

NOISE_STREAM = "smprt"


def copy_keys(image_ids: list[str], steps: slice, images: slice) -> list[str]:
    """Keys of the copies of a block (step-major, as ``GaussianCloud.points`` orders them)."""
    ids = image_ids[images]
    return [f"{image_id}#smprt{k}" for k in range(steps.start, steps.stop) for image_id in ids]


@register_experiment("smprt", spec=SmoothMPRTSpec)
class SmoothMPRT(Experiment):
    tables = ("check_scores",)

    def __init__(self, setup: Setup) -> None:
        self.spec: SmoothMPRTSpec = setup.spec.section("smprt")
        self.model, self.plan, self.methods, self.chunk_size = setup.model, setup.plan, setup.methods, setup.chunk_size
        self.comparer = MapComparer(setup.spec.metrics)
        self.keys = comparison_keys(self.comparer)
        self.rows = ScoreRows("smprt", self.methods)

    @classmethod
    def build(cls, setup: Setup) -> "SmoothMPRT":
        return cls(setup)

    def own_passes(self, states: int) -> Passes:
        return Passes(forward=0, backward=self.spec.samples * passes_per_state(self.methods) * states)

    def start(self, batch: Batch) -> None:
        self.batch = batch
        self.rows.clear()
        self.reference: list[PreparedReference] = []
        spec = self.spec
        self.cloud = GaussianCloud(
            batch.inputs, batch.image_ids, spec.samples, spec.noise_magnitude, spec.seed, stream=NOISE_STREAM, clean_last=True
        )

    def smoothed_maps(self, state: ModelState) -> list[Tensor]:
        """Every method's mean map [N, H, W] (float64) over the copies, in this state."""
        inputs = self.batch.inputs
        count, height, width = inputs.shape[0], inputs.shape[-2], inputs.shape[-1]
        totals = [torch.zeros(count, height, width, dtype=torch.float64, device=inputs.device) for _ in self.methods]
        for steps, images in tiles(self.spec.samples, count, self.chunk_size):
            points = self.cloud.points(steps, images)  # [k, n, C, H, W]: one block of copies, for every method
            k, n = points.shape[:2]
            copies = points.flatten(0, 1)  # one tensor for all methods: gradient and gradient×input share its pass
            context = AttributionContext(
                copy_keys(self.batch.image_ids, steps, images), state.context.seed, state.context.stage, self.chunk_size
            )
            targets = state.targets[images].repeat(k)
            for total, method in zip(totals, self.methods):
                explained = method.attribute(self.model, copies, targets, context)
                total[images] += reduce_channels(explained, method.reduction).view(k, n, height, width).sum(dim=0)
        return [total / self.spec.samples for total in totals]

    def observe(self, state: ModelState) -> None:
        maps = self.smoothed_maps(state)
        if state.trained:
            self.reference = [self.comparer.prepare(m) for m in maps]
            return
        values, bounds, reasons = [], [], []
        for reference, smoothed in zip(self.reference, maps):
            value, bound = self.comparer.compare(reference, smoothed)
            values.append(value)
            bounds.append(bound)
            reasons.append(comparison_reasons(value, reference.finite & all_finite(smoothed)))
        self.rows.add(
            self.keys, torch.stack(values), state.targets, seed=state.seed, stage=state.index, mode=self.plan.mode,
            bounds=torch.stack(bounds), reasons=torch.stack(reasons),
        )

    def finish(self) -> dict[str, pa.Table]:
        table = self.rows.table(self.batch.image_ids)
        return {} if table is None else {"check_scores": table}
