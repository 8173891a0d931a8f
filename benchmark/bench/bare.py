"""The time of the model passes alone: forward (+ input-gradient backward) calls of the same batch
sizes, with the same backward rules where a method has them (zennit's hooks for LRP and guided
backprop), replaying the same recorded bottom modules where the pipeline did (``attribution.reuse``),
and none of the pipeline around them (no stages, maps, metrics, occlusion or I/O)."""

from __future__ import annotations

from collections import Counter

import torch

from ..attribution import AttributionMethod
from ..engine.probe import pass_function, timed
from ..models.bundle import ModelBundle
from .accounting import PassKey


def time_pass(model: ModelBundle, key: PassKey, shape: tuple[int, ...], methods: dict[str, AttributionMethod],
              repeats: int = 3) -> float:
    """Seconds of one bare call of this kind (median of ``repeats`` after a warm-up)."""
    batch, grad, rules, replayed = key
    x = torch.randn(batch, *shape, device=model.device)
    once = pass_function(model, x, grad, methods[rules] if rules else None, replayed=replayed)
    return timed(once, model.device, repeats)


def describe(key: PassKey) -> str:
    batch, grad, rules, replayed = key
    kind = "forward+backward" if grad else "forward"
    return (
        f"batch={batch} {kind}"
        + (f" ({rules} rules)" if rules else "")
        + (f" (top only; replayed: {', '.join(replayed)})" if replayed else "")
    )


def bare_seconds(model: ModelBundle, calls: Counter, shape: tuple[int, ...], methods: list[AttributionMethod],
                 repeats: int = 3, plain: bool = False) -> tuple[float, dict[str, float]]:
    """Total bare time of the recorded calls, and the per-call time of each kind.

    ``plain`` times every backward as plain autograd, without the methods' rules: what the same
    passes would cost if LRP and guided backprop were free.
    """
    by_id = {method.id: method for method in methods}
    kinds: Counter = Counter()
    for (batch, grad, rules, replayed), count in calls.items():
        kinds[(batch, grad, None if plain else rules, replayed)] += count
    per_call = {key: time_pass(model, key, shape, by_id, repeats) for key in kinds}
    total = sum(per_call[key] * count for key, count in kinds.items())
    return total, {describe(key): seconds for key, seconds in per_call.items()}
