"""Timing one kind of model pass on the job's model: the measurements behind the tuning and bench's bare time.

A pass is what the pipeline runs per chunk: a forward with no gradient (occlusion, stage logits), a
forward and input-gradient backward (the gradient family), the same while a method's backward rules
are on the model (guided backprop, LRP), or the plain pass recomputing only the randomized top and
backpropagating through a recorded trained bottom (``attribution.reuse``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from typing import ContextManager

import torch

from ..attribution import AttributionMethod
from ..attribution.reuse import record_forward, replaying
from ..models.bundle import ModelBundle, set_precision
from ..models.tuning import Point

CHEAP_CALL_SECONDS = 0.3  # below this a call is repeated and warmed up at its own shape; above, timed once


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def first_class(out: torch.Tensor) -> torch.Tensor:
    seed = torch.zeros_like(out)
    seed[:, 0] = 1
    return seed


def pass_function(
    model: ModelBundle,
    x: torch.Tensor,
    backward: bool,
    rules: AttributionMethod | None = None,
    replayed: tuple[str, ...] = (),
    randomized: frozenset[str] = frozenset(),
) -> Callable[[], None]:
    """One pass over ``x`` as the pipeline makes it (see the module docstring). A replayed pass reuses the
    recorded trained bottom: the modules ``replayed`` (as bench recorded them), or those a stage with
    ``randomized`` modules would replay."""

    def rules_on() -> ContextManager:
        return rules.rules_applied(model, x) if rules is not None else nullcontext()

    if not backward:
        def forward() -> None:
            model.forward_only(x)
        return forward
    if replayed or randomized:
        with rules_on():
            _, recording = record_forward(model.module, x.detach().requires_grad_(True), frozenset())
        names = tuple(replayed) or recording.replayable(randomized)

        def replay() -> None:
            with rules_on(), replaying(model.module, recording, names):
                out = model.module(recording.leaf)
            torch.autograd.grad(out, recording.leaf, grad_outputs=first_class(out), retain_graph=True)
        return replay

    def fresh() -> None:
        with rules_on():
            leaf = x.detach().requires_grad_(True)
            out = model.module(leaf)
            torch.autograd.grad(out, leaf, grad_outputs=first_class(out))
    return fresh


def timed(once: Callable[[], None], device: torch.device, repeats: int) -> float:
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


@contextmanager
def execution(model: ModelBundle, channels_last: bool, threads: int, precision: str,
              fold: bool | None = None) -> Iterator[None]:
    """The model in this layout, torch with these threads and this matmul precision, forward-only passes
    with BatchNorms folded or not (None: as the model has it); restored afterwards."""
    before_fold = model.fold_batchnorm
    before_threads = torch.get_num_threads()
    before_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    before_layout = next((p for p in model.module.parameters() if p.dim() == 4), None)
    was_channels_last = before_layout is not None and before_layout.is_contiguous(memory_format=torch.channels_last) \
        and not before_layout.is_contiguous()
    model.module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    torch.set_num_threads(threads)
    set_precision(precision, model.device)
    if fold is not None:
        model.fold_batchnorm = fold
    try:
        yield
    finally:
        model.fold_batchnorm = before_fold
        torch.set_num_threads(before_threads)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before_tf32
        model.module.to(memory_format=torch.channels_last if was_channels_last else torch.contiguous_format)


class PassProbe:
    """Seconds per input of one ``Point`` (``models.tuning``): the measuring function of the tuner.

    ``rules``: the job's methods with backward rules, by id; ``replay_modules``: the modules randomized
    in a middle stage of the plan (a replayed pass costs about that on average over the stages).
    The first pass of each kind in a process pays for set-up (rule hooks, the allocator growing, kernels
    picked): up to 30 % more for LRP at 224 px, which would count against the layout measured first, so
    each kind gets one untimed pass before its first timing.
    """

    def __init__(self, model: ModelBundle, image_size: int, rules: dict[str, AttributionMethod],
                 replay_modules: frozenset[str] = frozenset()) -> None:
        self.model, self.image_size, self.rules, self.replay_modules = model, image_size, rules, replay_modules
        self.generator = torch.Generator().manual_seed(0)
        self.warmed: set[tuple[str, bool, bool]] = set()

    def __call__(self, point: Point) -> float:
        model = self.model
        x = torch.randn(point.size, 3, self.image_size, self.image_size, generator=self.generator).to(model.device)
        with execution(model, point.channels_last, point.threads, point.precision, fold=point.fold):
            if point.fold:
                model.forward_only(x[:1])  # the folded copy is built once per model state, not per pass
            once = pass_function(
                model, x, backward=point.kind != "forward", rules=self.rules.get(point.kind),
                randomized=self.replay_modules if point.replay else frozenset(),
            )
            if (point.kind, point.replay, point.fold) not in self.warmed:
                self.warmed.add((point.kind, point.replay, point.fold))
                once()
            first = timed_once(once, model.device)  # at this shape for the first time
            if first > 3 * CHEAP_CALL_SECONDS:
                seconds = first  # long enough that the first call's set-up hardly counts
            elif first > CHEAP_CALL_SECONDS:
                seconds = timed_once(once, model.device)
            else:
                seconds = min(timed_once(once, model.device) for _ in range(2))
        return seconds / point.size


def timed_once(once: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    once()
    synchronize(device)
    return time.perf_counter() - start
