"""The time of the model passes alone: plain forward (+ input-gradient backward) calls of the
same batch sizes, with none of the pipeline around them (no hooks, no metrics, no I/O)."""

from __future__ import annotations

import time
from collections import Counter

import torch
from torch import nn


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pass(module: nn.Module, batch: int, grad: bool, shape: tuple[int, ...], device: torch.device,
              repeats: int = 3) -> float:
    """Seconds of one bare call at this batch size (median of ``repeats`` after a warm-up)."""
    x = torch.randn(batch, *shape, device=device)

    def once() -> None:
        if grad:
            leaf = x.detach().requires_grad_(True)
            out = module(leaf)
            seed = torch.zeros_like(out)
            seed[:, 0] = 1
            torch.autograd.grad(out, leaf, grad_outputs=seed)
        else:
            with torch.no_grad():
                module(x)

    once()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        once()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def bare_seconds(module: nn.Module, calls: Counter, shape: tuple[int, ...], device: torch.device,
                 repeats: int = 3) -> tuple[float, dict[str, float]]:
    """Total bare time of the recorded calls, and the per-call time of each (batch, grad) kind."""
    per_call = {(batch, grad): time_pass(module, batch, grad, shape, device, repeats) for batch, grad in calls}
    total = sum(per_call[key] * count for key, count in calls.items())
    return total, {f"batch={b} {'forward+backward' if g else 'forward'}": t for (b, g), t in per_call.items()}
