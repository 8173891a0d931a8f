"""The Python API, for notebooks: validate a job, run it, read its results.

::

    import benchmark

    spec = benchmark.validate("jobs/smoke.yaml", overrides={"model.name": "torchvision:resnet18"})
    results = benchmark.run(spec, out="runs/notebook", executor="inline")
    results.frame("randomization", method="gradient", metric="ssim")   # pandas
    results.maps(method="gradient", stage=0)                           # decoded maps, numpy [H, W]

A job is a YAML file's path, a dict of sections (what the file would hold) or a ``JobSpec``;
``overrides`` are the CLI's ``--set`` values, as ``["key.path=value", ...]`` (values parsed as
YAML) or a ``{"key.path": value}`` dict. ``run`` does what ``benchmark run`` does (same
validation before any work, same resume on the same ``out``) and returns the run's results
(``benchmark.results.Results``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

if TYPE_CHECKING:
    from .config.spec import JobSpec
    from .results.query import Results

Job = Union[str, Path, Mapping[str, Any], "JobSpec"]
Overrides = Union[Sequence[str], Mapping[str, Any]]


class RunFailed(RuntimeError):
    """Some shards failed every attempt; ``results`` holds what was committed (rerun to retry the rest)."""

    def __init__(self, message: str, results: "Results") -> None:
        super().__init__(message)
        self.results = results


def validate(job: Job, overrides: Overrides = (), *, build: bool = False) -> "JobSpec":
    """The validated job spec; a bad key, value or type raises ``SpecError`` naming the key path and
    the allowed values. ``build=True`` also builds, on the CPU, everything a worker would (the model
    with its weights, the randomization plan, the methods with their build-time probes), as ``run``
    does before any work: an unknown module name, a factory that cannot be imported or LRP on a
    model that fails the conservation probe then fail here too."""
    from .config import JobSpec
    from .config.load import SpecError, apply_overrides, load_job, validate_job

    items = _override_items(overrides)
    if isinstance(job, JobSpec):
        spec = validate_job(apply_overrides(job.model_dump(mode="json"), items), source=f"job '{job.name}'")
    elif isinstance(job, Mapping):
        spec = validate_job(apply_overrides(dict(job), items), source="<job>")
    elif isinstance(job, (str, Path)):
        spec = load_job(job, items)
    else:
        raise SpecError(f"a job is a YAML file's path, a dict or a JobSpec, not {type(job).__name__}")
    if build:
        from .engine.driver import preflight_model

        preflight_model(spec)
    return spec


def run(
    job: Job,
    out: str | Path | None = None,
    overrides: Overrides = (),
    executor: str = "ray",
    *,
    address: str | None = None,
    new_run: bool = False,
    progress: bool = True,
) -> "Results":
    """Run a job (``benchmark run``) and return its results. ``executor``: 'ray' (an embedded local
    Ray, or the cluster at ``address`` / ``RAY_ADDRESS``) or 'inline' (this process, no Ray).
    The same ``out`` resumes; ``new_run`` discards results of a different spec there."""
    from .config import spec_hash
    from .engine.driver import output_uri
    from .engine.lease import OutputLease
    from .results import OutputStore

    spec = validate(job, overrides)
    uri = output_uri(spec, None if out is None else str(out))
    # one writer per output, as `benchmark run`: a notebook and a CLI run on the same folder are refused
    with OutputLease.acquire(OutputStore(uri), name=spec.name, spec_hash=spec_hash(spec),
                             command=f"benchmark.run({spec.name!r}, out={uri!r}) from Python (pid {os.getpid()})") as lease:
        outcome, state = _run_holding_the_lease(spec, uri, lease.info.token, executor, address, new_run, progress)
    from .results.query import open_results

    results = open_results(state.out)
    if not outcome.ok:
        failed = "; ".join(f"shard {shard}: {reason}" for shard, reason in sorted(outcome.failed.items()))
        raise RunFailed(f"{len(outcome.failed)} shard(s) failed: {failed} (rerun to retry them)", results)
    return results


def _run_holding_the_lease(spec, uri: str, token: str, executor: str, address: str | None, new_run: bool,
                           progress: bool):
    from .engine.driver import finish_run, prepare_run
    from .engine.progress import Progress
    from .experiments.walk import walked_states

    state = prepare_run(spec, uri, new_run=new_run)
    state.lease_token = token
    states = walked_states(spec, len(state.manifest["randomization_plan"]["stages"]))
    bar = Progress(sum(len(t) for t in state.pending), len(state.tasks), len(state.committed), enabled=progress,
                   states=states)
    started = time.perf_counter()
    try:
        outcome = _executor(executor, address)(state, bar)
    finally:
        bar.close()
    finish_run(state, outcome, time.perf_counter() - started)
    return outcome, state


def _executor(name: str, address: str | None):
    if name == "inline":
        from .engine.inline import execute_inline

        return execute_inline
    if name == "ray":
        from .engine.ray_executor import make_ray_executor

        return make_ray_executor(address=address)
    raise ValueError(f"executor must be 'ray' or 'inline', got {name!r}")


def _override_items(overrides: Overrides) -> list[str]:
    if isinstance(overrides, Mapping):
        return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]  # JSON is YAML
    if isinstance(overrides, str):
        return [overrides]
    return list(overrides)


__all__ = ["RunFailed", "run", "validate"]
