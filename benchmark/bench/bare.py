"""The time of the model passes alone: forward (+ input-gradient backward) calls of the same batch
sizes, with the same backward rules where a method has them (zennit's hooks for LRP and guided
backprop), replaying the same recorded bottom modules where the pipeline did (``attribution.reuse``),
and none of the pipeline around them (no stages, maps, metrics, occlusion or I/O)."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from typing import ContextManager

import torch

from ..attribution import AttributionMethod
from ..attribution.reuse import record_forward, replaying
from ..models.bundle import ModelBundle
from .accounting import PassKey


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(once: Callable[[], None], device: torch.device, repeats: int) -> float:
    """Median of ``repeats`` timed calls after one warm-up call."""
    once()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        once()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def time_pass(model: ModelBundle, key: PassKey, shape: tuple[int, ...], methods: dict[str, AttributionMethod],
              repeats: int = 3) -> float:
    """Seconds of one bare call of this kind (median of ``repeats`` after a warm-up)."""
    batch, grad, rules, replayed = key
    x = torch.randn(batch, *shape, device=model.device)

    def rules_on() -> ContextManager:
        return methods[rules].rules_applied(model, x) if rules else nullcontext()

    if not grad:
        def once() -> None:
            with torch.no_grad():
                model.module(x)
    elif replayed:
        with rules_on():
            _, recording = record_forward(model.module, x.detach().requires_grad_(True), frozenset())

        def once() -> None:
            with rules_on(), replaying(model.module, recording, replayed):
                out = model.module(recording.leaf)
            torch.autograd.grad(out, recording.leaf, grad_outputs=first_class(out), retain_graph=True)
    else:
        def once() -> None:
            with rules_on():
                leaf = x.detach().requires_grad_(True)
                out = model.module(leaf)
                torch.autograd.grad(out, leaf, grad_outputs=first_class(out))

    return median_seconds(once, model.device, repeats)


def first_class(out: torch.Tensor) -> torch.Tensor:
    seed = torch.zeros_like(out)
    seed[:, 0] = 1
    return seed


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
