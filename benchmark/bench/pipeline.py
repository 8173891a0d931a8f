"""Timing the real pipeline (the shard function of every executor) on a job's images."""

from __future__ import annotations

import resource
import time
from contextlib import nullcontext
from collections import Counter
from dataclasses import dataclass, replace

import torch

from ..config.spec import JobSpec
from ..engine.driver import prepare_run
from ..engine.shard import ShardRunner
from ..engine.tuning import ExecutionRecord
from ..models.tuning import ExecutionSettings, with_settings
from ..profiling import Profile
from .accounting import PassCount, PassRecorder, count_images, expected_passes


@dataclass
class PipelineMeasurement:
    images: int
    seconds: float
    states: int  # model states explained: the trained model and every randomized stage × seed
    batches: int  # batches evaluated (the warm-up not counted)
    randomizations: int  # model states put in place by randomizing, over all batches
    methods: list[str]
    calls: Counter
    expected: PassCount
    peak_memory_bytes: int
    runner: ShardRunner
    execution: ExecutionRecord  # the run's execution settings and how they were decided (the probe's time)
    out: str
    profile: dict[str, float] | None = None  # seconds by part of the pipeline (``--profile``)
    profile_calls: dict[str, int] | None = None

    @property
    def randomizations_per_batch(self) -> float:
        """One per randomized model state: the state walk randomizes each (seed, stage) once per batch,
        however many experiments look at it."""
        return self.randomizations / max(self.batches, 1)

    @property
    def recorded(self) -> PassCount:
        images = max(self.images, 1)
        return PassCount(
            self.calls_images(backward=True) // images, self.calls_images(backward=False) // images
        )

    def backward_passes_by_rules(self) -> dict[str, int]:
        """Forward+backward passes per image, by the method whose backward rules were active ("plain": none)."""
        totals: Counter = Counter()
        for (batch, grad, rules, _), count in self.calls.items():
            if grad:
                totals[rules or "plain"] += batch * count
        return {rules: total // max(self.images, 1) for rules, total in sorted(totals.items())}

    def replayed_passes(self) -> int:
        """Forward+backward passes per image that recomputed only the randomized top (``attribution.reuse``)."""
        total = sum(batch * count for (batch, grad, _, replayed), count in self.calls.items() if grad and replayed)
        return total // max(self.images, 1)

    def calls_images(self, backward: bool) -> int:
        return count_images(self.calls, backward)


def peak_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024  # Linux reports KiB


def measure_pipeline(spec: JobSpec, out: str, settings: ExecutionSettings | None = None,
                     profile: bool = False) -> PipelineMeasurement:
    """Run every shard of ``spec`` once, in this process, into ``out``; model loading and the execution
    probe are excluded (paid once per actor and once per run, not per image) and one image is evaluated
    first as a warm-up. ``settings``: execution settings to use instead of probing ('auto' resolved to
    them: how repeated measurements of one job keep the first one's); ``profile``: time every part."""
    if settings is not None:
        spec = with_settings(spec, settings)
    state = prepare_run(spec, out, new_run=True)
    runner = ShardRunner(spec, out, worker="bench")
    device = runner.model.device
    warm_up, _ = next(runner._batches(state.tasks[0].records[:1]))
    if warm_up is not None:
        runner.evaluator.evaluate(warm_up)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    counts = replace(runner.evaluator.counts)
    with PassRecorder(runner.model.module) as recorder, (Profile(device) if profile else nullcontext()) as parts:
        started = time.perf_counter()
        images = sum(runner.run(task)["images"] for task in state.tasks)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    after = runner.evaluator.counts
    return PipelineMeasurement(
        images=images,
        seconds=seconds,
        states=runner.evaluator.walk.states_per_batch,
        batches=after.batches - counts.batches,
        randomizations=after.randomizations - counts.randomizations,
        methods=[m.id for m in runner.evaluator.methods],
        calls=recorder.calls,
        expected=expected_passes(runner.evaluator),
        peak_memory_bytes=peak_memory(device),
        runner=runner,
        execution=state.execution,
        out=out,
        profile=parts.parts() if parts is not None else None,
        profile_calls=dict(parts.calls) if parts is not None else None,
    )
