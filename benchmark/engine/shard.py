"""The shard function: everything a worker does for one shard, shared by every executor.

A ``ShardRunner`` is built once per worker (Ray actor or the inline loop): it loads the
model once and keeps it, its randomized variants and the methods for every shard it runs.
``run`` decodes the shard's images (the next batch is decoded while the current one is
evaluated), evaluates them, writes the shard's tables and commits them. It returns only a
small summary: maps and tables never travel back to the driver.
"""

from __future__ import annotations

import os
import platform
import time
from collections import defaultdict
from datetime import datetime, timezone
from typing import Callable, Iterator

import pyarrow as pa
import torch

from ..config import JobSpec, spec_hash
from ..data import ImageBatch, LoadError, Preprocess, build_dataset
from ..data.base import ImageRecord
from ..data.loader import prefetch_batches
from ..experiments.batch import BatchEvaluator
from ..models import load_model, plan_for
from ..models.threads import intra_op_threads
from ..results import OutputStore, ShardWriter, table_schema
from .lease import LeaseFence
from .plan import ShardTask
from .progress import ProgressSink, StateWork


def partition_of(spec: JobSpec) -> dict[str, str]:
    return {"model": spec.model.model_id, "dataset": spec.dataset.kind}


def default_worker_name() -> str:
    return f"{platform.node()}:{os.getpid()}"


def error_rows(errors: list[LoadError], shard: int, attempt: int) -> pa.Table:
    return pa.table(
        {
            "where": pa.array(["load"] * len(errors), pa.string()),
            "image_id": pa.array([e.image_id for e in errors], pa.string()),
            "source": pa.array([e.source for e in errors], pa.string()),
            "shard": pa.array([shard] * len(errors), pa.int32()),
            "attempt": pa.array([attempt] * len(errors), pa.int32()),
            "reason": pa.array([e.reason for e in errors], pa.string()),
        }
    )


def shard_failure_rows(shard: int, attempt: int, reason: str) -> pa.Table:
    return pa.table(
        {
            "where": pa.array(["shard"], pa.string()),
            "image_id": pa.array([None], pa.string()),
            "source": pa.array([None], pa.string()),
            "shard": pa.array([shard], pa.int32()),
            "attempt": pa.array([attempt], pa.int32()),
            "reason": pa.array([reason], pa.string()),
        }
    )


class ShardRunner:
    def __init__(
        self,
        spec: JobSpec,
        out_uri: str,
        worker: str | None = None,
        device: torch.device | None = None,
        progress: ProgressSink | None = None,
        lease_token: str | None = None,
    ):
        """``progress``: where every finished model state of every batch is reported (the run's
        progress bar, in this process or through Ray). ``lease_token``: the driver's lease on the
        output; a shard is written only while the output's lease still carries it."""
        self.spec = spec
        self.worker = worker or default_worker_name()
        self.model = load_model(spec, device)
        self.plan = plan_for(spec, self.model.module, self.model.definition)
        self.evaluator = BatchEvaluator(spec, self.model, self.plan)
        self.dataset = build_dataset(spec)
        self.preprocess = Preprocess.from_spec(spec.dataset)
        fence = LeaseFence(out_uri, lease_token) if lease_token else None
        self.fence = fence or (lambda: None)
        self.writer = ShardWriter(OutputStore(out_uri), partition_of(spec), fence=fence)
        self.spec_hash = spec_hash(spec)
        self.progress = progress
        self.work = StateWork.of(self.evaluator.states, *self.evaluator.costs)

    def _batches(self, records: tuple[ImageRecord, ...]) -> Iterator[tuple[ImageBatch | None, list[LoadError]]]:
        """Decoded batches, the next one decoded in a background thread while this one computes."""
        return prefetch_batches(self.dataset, records, self.preprocess, self.spec.runtime.batch_size)

    def _save_maps(self, task: ShardTask) -> frozenset[str]:
        """Ids of this shard's images among the run's first ``runtime.save_maps`` (canonical order)."""
        end = self.spec.dataset.offset + self.spec.runtime.save_maps
        return frozenset(r.image_id for i, r in enumerate(task.records) if task.start + i < end)

    def _reporter(self, task: ShardTask, attempt: int, images: int) -> Callable[[float], None] | None:
        """The evaluator's progress callback for one batch of ``images`` images. Its first
        ``images`` image-states are the trained model's, each worth ``work.trained`` of an image,
        every later one ``work.each``: each report goes on with the work it carries."""
        if self.progress is None:
            return None
        sink, work, position = self.progress, self.work, [0.0]

        def report(units: float) -> None:
            start, position[0] = position[0], position[0] + units
            trained = max(0.0, min(position[0], images) - start)
            sink.report(task.shard, attempt, units, trained * work.trained + (units - trained) * work.each)

        return report

    def run(self, task: ShardTask, attempt: int = 1) -> dict:
        """Evaluate, write and commit one shard, with ``runtime.threads`` torch threads whatever the
        machine (numbers must not depend on where a shard ran)."""
        self.fence()  # a run that lost its output starts nothing more there
        with intra_op_threads(self.spec.runtime.threads):
            return self._run(task, attempt)

    def _run(self, task: ShardTask, attempt: int) -> dict:
        self.evaluator.degenerate_maps.take()  # drop what a failed earlier try (or a warm-up) left behind
        started = time.perf_counter()
        parts: dict[str, list[pa.Table]] = defaultdict(list)
        errors: list[LoadError] = []
        images = 0
        save_maps = self._save_maps(task)
        for batch, batch_errors in self._batches(task.records):
            errors.extend(batch_errors)
            if batch is None:
                continue
            images += len(batch)
            report = self._reporter(task, attempt, len(batch))
            for name, table in self.evaluator.evaluate(batch, save_maps, report).items():
                parts[name].append(table)
        seconds = time.perf_counter() - started
        tables = {name: pa.concat_tables(pieces) for name, pieces in parts.items()}
        if errors:
            tables["errors"] = error_rows(errors, task.shard, attempt)
        summary = {
            "shard": task.shard,
            "images": images,
            "errors": len(errors),
            "seconds": seconds,
            "worker": self.worker,
            "device": str(self.model.device),
            "attempt": attempt,
        }
        degenerate = self.evaluator.degenerate_maps.take()  # method -> all_zero / non_finite -> images
        tables["shards"] = pa.table(
            {
                **{key: [summary[key]] for key in ("shard", "images", "errors", "seconds", "worker", "device", "attempt")},
                "finished_at": pa.array([datetime.now(timezone.utc)], table_schema("shards").arrow.field("finished_at").type),
            }
        )
        info = {"spec_hash": self.spec_hash, "worker": self.worker, "attempt": attempt, "degenerate_maps": degenerate}
        self.writer.commit(task.shard, tables, info)
        return {**summary, "degenerate_maps": degenerate}
