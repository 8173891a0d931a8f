"""A run's execution settings: decided once when it starts, recorded in the manifest, kept for its whole life.

``settle_execution`` runs in the driver (``prepare_run``) before any work. A first run probes the settings
the job leaves at 'auto' on the run's model, input size, device and method mix (``models.tuning``:
the search; ``engine.probe``: the timing); a resume, or any worker (every Ray actor, the inline loop),
reads them back from the manifest (``recorded_settings``). Float results depend on chunk size, layout,
threads and precision in their last bits, so deciding once and recording is what keeps a resumed or
redistributed run bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..config import JobSpec
from ..experiments.batch import BatchEvaluator
from ..models import load_model
from ..models.bundle import resolve_device
from ..models.chunking import gpu_chunk
from ..models.folding import foldable
from ..models.tuning import (
    CHUNK_CANDIDATES, TUNED_KEYS, ExecutionSettings, PassKind, Tuner, fallback_settings, open_keys,
)
from ..results import OutputStore
from ..results.store import MANIFEST
from .probe import PassProbe

EXECUTION = "execution"  # the manifest's key


@dataclass
class ExecutionRecord:
    """The settings of a run and how each was decided (the manifest's ``execution``)."""

    settings: ExecutionSettings
    chosen_by: dict[str, str]  # key -> 'runtime' (given), 'probe', or why it needed no probe
    device: str
    probe: dict[str, Any] | None = None
    reused: bool = False  # read back from the manifest of an earlier attempt

    def as_manifest(self) -> dict[str, Any]:
        return {
            "settings": self.settings.as_dict(),
            "chosen_by": dict(self.chosen_by),
            "device": self.device,
            "probe": self.probe,
            "decided_on": platform.node(),
            "decided_at": time.time(),
        }

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> "ExecutionRecord":
        return cls(ExecutionSettings.from_dict(entry["settings"]), dict(entry.get("chosen_by", {})),
                   str(entry.get("device", "?")), entry.get("probe"), reused=True)

    def describe(self) -> str:
        probed = [key for key, how in self.chosen_by.items() if how == "probe"]
        given = [key for key, how in self.chosen_by.items() if how == "runtime"]
        parts = [f"{self.settings.describe()} on {self.device}"]
        if self.reused:
            parts.append("recorded at the run's first attempt")
        elif probed and self.probe is not None:
            parts.append(f"probed in {self.probe['seconds']:.1f} s: {', '.join(probed)}")
        if given:
            parts.append(f"given: {', '.join(given)}")
        rest = [f"{key} ({how})" for key, how in self.chosen_by.items() if how not in ("probe", "runtime")]
        if rest and not self.reused:
            parts.append("; ".join(rest))
        return " — ".join(parts)


def recorded_settings(out_uri: str) -> ExecutionSettings | None:
    """The settings the run in ``out_uri`` was started with (None: no run there, or one from before tuning)."""
    manifest = OutputStore(out_uri).read_json(MANIFEST)
    if not manifest or EXECUTION not in manifest:
        return None
    return ExecutionSettings.from_dict(manifest[EXECUTION]["settings"])


def cpus_per_worker(spec: JobSpec) -> int:
    """Threads a worker may use: its ``runtime.num_cpus`` (whole CPUs), at most this machine's."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        available = os.cpu_count() or 1
    return max(1, min(int(math.floor(spec.runtime.num_cpus + 1e-9)), available))


def workload(evaluator: BatchEvaluator, images: int) -> list[PassKind]:
    """The job's passes per image by kind, from what the walk and the experiments declare (the same
    declarations as ``bench.accounting.expected_passes``), with the batch of ``images`` images."""
    walk, experiments = evaluator.walk, evaluator.experiments
    randomized_states = walk.states_per_batch - 1
    per_image: Counter = Counter()

    def explained(observers: list, states: int) -> None:
        shared: set[str] = set()
        methods = {id(m): m for e in observers for m in e.explains()}.values()
        for method in methods:
            passes = method.passes()
            if passes is None or passes.backward == 0:  # None: not known in advance (a user's callable)
                continue
            if passes.shared is not None:
                if passes.shared in shared:
                    continue
                shared.add(passes.shared)
            name = method.id if method.has_backward_rules else "plain"
            per_image[(name, True, passes.backward, True)] += states * passes.backward

    explained(experiments, 1)
    explained(evaluator.randomized_observers, randomized_states)
    per_image[("forward", False, 1, False)] += 1 + (randomized_states if walk.stage_forward else 0)
    rules = next((m.id for m in evaluator.methods if m.has_backward_rules), "plain")
    for experiment in experiments:
        observed = walk.states_per_batch if experiment in evaluator.randomized_observers else 1
        own = experiment.own_passes(observed)
        if own.forward:
            per_image[("forward", False, -own.forward, True)] += own.forward  # a flat stream: -n marks it
        if own.backward:
            per_image[(rules, True, 1, True)] += own.backward
    kinds = []
    for (name, backward, steps, chunked), count in per_image.items():
        if steps < 0:  # own forwards: images x passes per image inputs, cut in chunks
            kinds.append(PassKind(name, backward, count, images=1, steps=images * -steps))
        else:
            kinds.append(PassKind(name, backward, count, images=images, steps=steps, chunked=chunked))
    return kinds


def chunk_ladder(evaluator: BatchEvaluator, image_size: int, images: int) -> tuple[int, ...]:
    """Chunk sizes to try: 8-64 on a CPU; on a GPU doubling from 8 up to what its memory allows."""
    model = evaluator.model
    if model.device.type != "cuda":
        return CHUNK_CANDIDATES
    recorded = 1 + sum(method.recorded_graphs for method in evaluator.methods)  # the batch's recorded bottoms
    cap = gpu_chunk(model, image_size, retained_inputs=images * recorded if evaluator.walk.reuse else 0)
    ladder = [size for size in (2 ** i for i in range(3, 11)) if size <= cap]
    return tuple(ladder or [cap])


def settle_execution(spec: JobSpec, previous: dict[str, Any] | None, evaluator: BatchEvaluator,
                     images: int) -> ExecutionRecord:
    """The run's execution settings: those of its first attempt when there was one, else the explicit
    values of ``runtime`` and, for 'auto', a probe on the run's device. ``evaluator``: built by the
    preflight on the CPU (reused for a CPU probe); ``images``: the run's image count."""
    if previous is not None and EXECUTION in previous:
        return ExecutionRecord.from_manifest(previous[EXECUTION])
    runtime = spec.runtime
    keys = open_keys(runtime)
    chosen_by = {key: ("probe" if key in keys else "runtime") for key in TUNED_KEYS}
    try:
        device = resolve_device(runtime.device)
    except RuntimeError:  # the driver sees no such device (a CPU head of a GPU cluster): nothing to probe here
        kind = runtime.device.partition(":")[0]
        return ExecutionRecord(fallback_settings(runtime, kind), {
            k: f"fallback (no {runtime.device} device on the driver to probe)" if k in keys else v
            for k, v in chosen_by.items()}, runtime.device)
    fixed = fallback_settings(runtime, device.type)
    if not keys:
        return ExecutionRecord(fixed, chosen_by, str(device))
    if runtime.tuning_seconds <= 0:
        return ExecutionRecord(fixed, {k: "fallback (runtime.tuning_seconds: 0)" if k in keys else v
                                       for k, v in chosen_by.items()}, str(device))
    if device.type != evaluator.model.device.type:
        model = load_model(spec, device)
        evaluator = BatchEvaluator(spec, model, evaluator.plan)
    batch = max(1, min(runtime.batch_size, spec.dataset.shard_size, images))
    max_threads = cpus_per_worker(spec) if device.type == "cpu" else 1
    plan = evaluator.plan
    replayable = evaluator.walk.reuse and any(
        not m.has_backward_rules and m.passes().backward == 1 for e in evaluator.randomized_observers for m in e.explains()
    )
    middle = frozenset(plan.modules_at(len(plan.stages) // 2 + 1)) if plan.stages else frozenset()
    probe = PassProbe(evaluator.model, spec.dataset.crop, {m.id: m for m in evaluator.methods if m.has_backward_rules},
                      replay_modules=middle)
    can_fold = "fold_batchnorm" in keys and foldable(evaluator.model.module)
    tuner = Tuner(
        workload(evaluator, batch), probe, fixed=fixed, open_keys=keys,
        chunks=chunk_ladder(evaluator, spec.dataset.crop, batch), max_threads=max_threads,
        cuda=device.type == "cuda", replayable=replayable, foldable=can_fold, budget=runtime.tuning_seconds,
        clock=time.perf_counter,
    )
    result = tuner.run()
    if "threads" in keys and max_threads == 1:
        chosen_by["threads"] = "1 CPU per worker (runtime.num_cpus)" if device.type == "cpu" else "GPU worker"
    if "precision" in keys and device.type != "cuda":
        chosen_by["precision"] = "no TF32 on a CPU"
    if "reuse_bottom_forward" in keys and not replayable:
        chosen_by["reuse_bottom_forward"] = "nothing to replay in this job"
    if "fold_batchnorm" in keys and not can_fold:
        chosen_by["fold_batchnorm"] = "no BatchNorm after a convolution to fold (or the model does not trace)"
    return ExecutionRecord(result.settings, chosen_by, str(device), result.summary())
