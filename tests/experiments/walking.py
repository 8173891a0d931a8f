"""Feeding one experiment the model states of a batch, as the batch evaluator does (for unit tests)."""

from __future__ import annotations

from contextlib import closing

import pyarrow as pa
import torch

from benchmark.experiments import Batch, Experiment
from benchmark.experiments.walk import StateWalk
from benchmark.models.bundle import ModelBundle
from benchmark.models.randomization import RandomizationPlan
from benchmark.results.schema import TableSchema, conform, table_schema
from benchmark.results.writer import stamp_shard

from ..attribution.attribution_models import keys

PARTITION = {"model": "m", "dataset": "d"}


def make_batch(inputs: torch.Tensor, labels: torch.Tensor, saved: list[int] | None = None,
               pixels: torch.Tensor | None = None) -> Batch:
    """A batch of ``inputs``; its unnormalized ``pixels`` default to the inputs themselves (the tiny
    test models take them as they are)."""
    index = torch.tensor(saved, dtype=torch.long) if saved else None
    return Batch(keys(inputs.shape[0]), inputs if pixels is None else pixels, inputs, labels, index)


def observe_batch(
    experiment: Experiment,
    model: ModelBundle,
    plan: RandomizationPlan,
    seeds: list[int],
    batch: Batch,
    target: str = "label",
    chunk_size: int = 64,
) -> dict[str, pa.Table]:
    """``start``, every state of the walk (trained, then seed × stage) to ``observe``, ``finish``."""
    walk = StateWalk(model, plan, seeds, target, chunk_size, randomized=True, stage_logits=experiment.stage_logits,
                     reuse=False)
    experiment.start(batch)
    with closing(walk.states(batch, experiment.trained_forward())) as states:
        for state in states:
            experiment.observe(state)
    return experiment.finish()


def as_written(table: pa.Table, name: str, shard: int = 0) -> pa.Table:
    """The table as the writer stores it (checked against its schema, shard stamped)."""
    schema: TableSchema = table_schema(name)
    return conform(stamp_shard(table, schema, shard), schema, PARTITION)
