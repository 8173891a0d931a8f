"""The uninformative baseline: i.i.d. standard-normal maps (zero pixel covariance, Theorem 1).

A map is a pure function of (image key, method seed, run seed, stage), drawn independently for
every stage, and costs no model pass. A context's ``variant`` (another explanation of the same
state, e.g. of another class in the random-logit test) draws another independent map: the baseline
stands for an explanation that is fresh noise whenever one is asked for. Stage 0 is the trained model, the same for every run seed,
so its map ignores the run seed: the stage-0 map of an image is one map however many run seeds a
job has and whether or not the engine computes it once.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..config.spec import NoiseSpec
from ..models.bundle import ModelBundle
from . import keyed_rng
from .base import AttributionContext, AttributionMethod, Passes, register_method


def noise_maps(
    image_keys: list[str],
    shape: tuple[int, ...],
    method_seed: int,
    run_seed: int,
    stage: int,
    device: torch.device,
    variant: str | None = None,
) -> Tensor:
    """[N, *shape] standard-normal maps, one per key; ``variant`` (the context's) draws another set."""
    run = run_seed if stage > 0 else None
    extra = () if variant is None else (variant,)
    words = keyed_rng.key_words(image_keys, "noise", method_seed, run, stage, *extra, device=device)
    numel = 1
    for size in shape:
        numel *= size
    return keyed_rng.normal(words, numel).view(len(image_keys), *shape)


@register_method("noise", NoiseSpec)
class Noise(AttributionMethod):
    """Standard-normal noise in place of an explanation."""

    spec: NoiseSpec

    def attribute(self, model: ModelBundle, inputs: Tensor, targets: Tensor, context: AttributionContext) -> Tensor:
        context.check_batch(inputs)
        maps = noise_maps(
            context.image_keys, tuple(inputs.shape[1:]), self.spec.seed, context.seed, context.stage, inputs.device,
            context.variant,
        )
        return maps.to(inputs.dtype)

    def passes(self) -> Passes:
        return Passes(0, 0)
