"""The driver's side of a run, shared by every executor: plan, resume, record, finish.

``prepare_run`` validates what can be validated before any work (dataset index, annotation
files, the randomization plan on the bare architecture), refuses to mix two specs in one
output, writes the manifest and returns the shards that are not committed yet. Executors
(inline, Ray) only decide *where* ``ShardRunner.run`` executes.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..config import JobSpec, SpecError, spec_hash
from ..config.load import check_consistency
from ..data import build_dataset, select_records
from ..experiments.batch import BatchEvaluator
from ..models import load_model, plan_for
from ..results import OutputStore, ShardWriter, committed_shards, validate_manifest
from ..results.cleanup import remove_uncommitted
from ..results.reader import run_spec_hashes
from ..results.schema import table_names
from ..results.store import AGGREGATES, COMMITS, FAILURES, FIGURES, MANIFEST, REPORT
from .lease import LeaseFence, LeaseLost
from .manifest import ResumeRefused, check_resume, check_same_images, new_manifest
from .plan import ShardTask, dataset_fingerprint, describe_shards, plan_shards
from .shard import partition_of, shard_failure_rows
from .status import status  # noqa: F401  (kept importable from here)


class ExecutorError(RuntimeError):
    """The run cannot go on (e.g. no Ray actor could start); the message says why."""


@dataclass
class RunState:
    spec: JobSpec
    out: str
    store: OutputStore
    manifest: dict[str, Any]
    tasks: list[ShardTask]
    pending: list[ShardTask]
    committed: dict[int, dict]
    notes: list[str] = field(default_factory=list)  # what the checks found worth saying (a moved dataset)
    lease_token: str | None = None  # the driver's lease on the output: workers write only while it holds

    def holds_output(self) -> str | None:
        """None while this run may write its output; else why not (its lease was taken over)."""
        if not self.lease_token:
            return None
        try:
            LeaseFence(self.out, self.lease_token)()
        except LeaseLost as lost:
            return str(lost)
        return None


@dataclass
class RunOutcome:
    completed: list[dict] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)  # executor, actors, scheduling overhead, …

    @property
    def ok(self) -> bool:
        return not self.failed


def output_uri(spec: JobSpec, out: str | None) -> str:
    uri = out or spec.output
    if not uri:
        return f"runs/{spec.name}"
    return uri


def preflight_model(spec: JobSpec) -> tuple[dict, str, dict]:
    """Build on the driver, before any work, everything a worker will build: the model with its
    weights, the randomization plan, the methods and the experiments. A missing pretrained file,
    a mismatching state dict, a factory that cannot be imported, a bad randomization rule, an
    unsupported method (LRP on a model that fails the conservation probe) or a module name that
    does not exist fails here, once, instead of in every worker. Returns the stage plan (as
    written to the manifest), the weights' source and what the manifest records of the model."""
    try:
        model = load_model(spec, torch.device("cpu"))
        plan = plan_for(spec, model.module, model.definition)
        BatchEvaluator(spec, model, plan)
    except (ValueError, NotImplementedError) as error:  # names the key; MethodNotSupported included
        raise SpecError(f"job '{spec.name}' cannot run: {error}") from None
    return plan.describe(), model.weights_source, model.describe(spec.model.model_id)


def discard_previous(store: OutputStore) -> None:
    """Everything a run and the commands after it wrote: tables, markers, aggregates, figures, report."""
    for folder in (*table_names(), COMMITS, FAILURES, AGGREGATES, FIGURES):
        store.delete_dir(folder)
    store.delete(REPORT)
    store.delete(MANIFEST)


def prepare_run(spec: JobSpec, out: str | None = None, new_run: bool = False, run_id: str | None = None) -> RunState:
    """Check everything, then (only then) touch the output. ``run_id`` names a new output's run
    (``benchmark submit`` passes the id its submissions carry); an output that already has a
    manifest keeps its own. A resume must be the same science on the same images; a new run
    discards the old results only after the new spec has passed every check (DESIGN §11)."""
    check_consistency(spec)
    uri = output_uri(spec, out)
    store = OutputStore(uri)
    previous = store.read_json(MANIFEST)
    resuming = previous is not None and not new_run
    if resuming:
        check_resume(previous, spec)  # cheap: refuse a changed spec before reading the dataset

    dataset = build_dataset(spec)  # a malformed annotation file fails here, before any work
    records = select_records(spec, dataset)
    if not records:
        raise SpecError(
            f"dataset '{spec.dataset.kind}' selects no images (offset {spec.dataset.offset}, limit {spec.dataset.limit})"
        )
    tasks = plan_shards(records, spec.dataset.offset, spec.dataset.shard_size)
    shard_plan = describe_shards(tasks, spec.dataset.shard_size)
    notes = check_same_images(previous, spec, shard_plan) if resuming else []
    randomization_plan, weights_source, model_record = preflight_model(spec)

    # every check passed: from here on the output changes
    if previous is not None and new_run:
        discard_previous(store)
        previous = None
    manifest = new_manifest(
        spec,
        previous,
        dataset=dataset.describe(),
        dataset_fingerprint=dataset_fingerprint(shard_plan),
        weights=weights_source,
        shard_plan=shard_plan,
        randomization_plan=randomization_plan,
        model=model_record,
        run_id=run_id,
    )
    validate_manifest(manifest)
    store.write_json(MANIFEST, manifest)
    removed = remove_uncommitted(store)
    if removed:
        notes.append(removed.describe())
    hashes = run_spec_hashes(manifest)
    committed = {s: m for s, m in committed_shards(store).items() if m.get("spec_hash") in hashes}
    pending = [task for task in tasks if task.shard not in committed]
    return RunState(spec, uri, store, manifest, tasks, pending, committed, notes)


def record_failure(state: RunState, task: ShardTask, attempt: int, reason: str) -> None:
    fence = LeaseFence(state.out, state.lease_token) if state.lease_token else None
    writer = ShardWriter(state.store, partition_of(state.spec), fence=fence)
    try:
        writer.record_failure(task.shard, shard_failure_rows(task.shard, attempt, reason), {"spec_hash": spec_hash(state.spec)})
    except LeaseLost:
        pass  # the output is another run's now: its holder runs the shard again


def finish_run(state: RunState, outcome: RunOutcome, seconds: float, extra: dict[str, Any] | None = None) -> dict:
    manifest = dict(state.manifest)
    lost = state.holds_output()
    if lost is not None:  # the new holder's shards in flight are not leftovers, its manifest not ours to write
        print(f"warning: {lost}; the manifest and the cleanup of leftovers are left to it", file=sys.stderr)
        return manifest
    removed = remove_uncommitted(state.store)  # parts of shard tries that failed or were abandoned
    if removed:
        extra = {**(extra or {}), "removed_uncommitted": removed.counts()}
    committed = committed_shards(state.store)
    manifest.update(
        updated_at=time.time(),
        finished_at=time.time(),
        last_attempt={
            "seconds": seconds,
            "shards_run": len(outcome.completed),
            "shards_failed": sorted(outcome.failed),
            **outcome.details,
            **(extra or {}),
        },
        shards_committed=len(committed),
        shards_total=len(state.tasks),
    )
    validate_manifest(manifest)
    state.store.write_json(MANIFEST, manifest)
    return manifest


__all__ = [
    "ExecutorError", "ResumeRefused", "RunOutcome", "RunState", "discard_previous", "finish_run", "output_uri",
    "prepare_run", "record_failure", "status",
]
