"""``benchmark run JOB.yaml``: plan, run (inline or on Ray), resume, summarise."""

from __future__ import annotations

import argparse
import sys
import time

from .main import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("run", help="run a job (the same command on the same --out resumes)")
    parser.add_argument("job", help="job spec (YAML); '-' reads it from standard input")
    parser.add_argument("--out", help="output URI: local folder, s3://bucket/prefix, gs://… (default: the job's output, else runs/<name>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec value, e.g. --set model.weights=random (repeatable)")
    parser.add_argument("--executor", choices=("ray", "inline"), default="ray",
                        help="ray (default): actors on an embedded Ray or the cluster at --address; "
                             "inline: shard after shard in this process, no Ray (debugging)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--run-id", help=argparse.SUPPRESS)  # set by `benchmark submit`: the id of a new output's run
    parser.add_argument("--new-run", action="store_true", help="discard results of a different spec in --out and start over")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (and no progress lines)")
    parser.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                        help="without a terminal (submitted jobs, CI logs) print a progress line this often "
                             "(default: $BENCHMARK_PROGRESS_EVERY, else 30)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.status import format_scheduling
    from ..engine.driver import finish_run, prepare_run
    from ..engine.progress import Progress
    from ..experiments.stages import walked_states
    from ..results.summary import format_summary

    spec = load_job_argument(args.job, args.overrides)
    state = prepare_run(spec, args.out, new_run=args.new_run, run_id=args.run_id)
    pending_images = sum(len(t) for t in state.pending)
    stages = len(state.manifest["randomization_plan"]["stages"])
    states = walked_states(spec, stages)
    print(
        f"run '{spec.name}' ({state.manifest['run_id']}, spec {state.manifest['spec_hash']}) -> {state.out}\n"
        f"  {len(state.tasks)} shards, {len(state.committed)} already committed, {len(state.pending)} to run "
        f"({pending_images} images x {states} model states), {stages} randomization stages",
        file=sys.stderr,
    )
    progress = Progress(pending_images, len(state.tasks), len(state.committed), enabled=not args.no_progress,
                        states=states, every=_progress_every(args.progress_every))
    started = time.perf_counter()
    try:
        with progress.capturing():
            outcome = _executor(args)(state, progress)
    finally:
        progress.close()
    finish_run(state, outcome, time.perf_counter() - started)
    print(format_summary(state.store))
    scheduling = format_scheduling(outcome.details)
    if scheduling:
        print(scheduling)
    if not outcome.ok:
        print(
            f"error: {len(outcome.failed)} shard(s) failed: "
            + "; ".join(f"shard {s}: {r}" for s, r in sorted(outcome.failed.items()))
            + f"\n  rerun the same command to retry them; details in {state.out}/errors",
            file=sys.stderr,
        )
        return 1
    return 0


def _progress_every(value: float | None) -> float:
    import os

    from ..engine.progress import DEFAULT_EVERY

    if value is None:
        raw = os.environ.get("BENCHMARK_PROGRESS_EVERY")
        try:
            value = float(raw) if raw else DEFAULT_EVERY
        except ValueError:
            raise UserError(f"BENCHMARK_PROGRESS_EVERY={raw!r}: expected seconds, e.g. 30") from None
    if value <= 0:
        raise UserError(f"--progress-every {value:g}: expected a positive number of seconds")
    return value


def load_job_argument(job: str, overrides: list[str]):
    """A job file, or with '-' the spec on standard input (how `benchmark submit` ships a resolved spec)."""
    from ..config import load_job, validate_job
    from ..config.load import SpecError, apply_overrides

    if job != "-":
        return load_job(job, overrides)
    import yaml

    raw = yaml.safe_load(sys.stdin.read())
    if not isinstance(raw, dict):
        raise SpecError("<stdin>: a job spec must be a mapping of sections (model, dataset, methods, ...)")
    return validate_job(apply_overrides(raw, overrides), source="<stdin>")


def _executor(args: argparse.Namespace):
    if args.executor == "inline":
        from ..engine.inline import execute_inline

        return execute_inline
    try:
        from ..engine.ray_executor import make_ray_executor
    except ImportError as error:
        raise UserError(
            f"the ray executor needs Ray ({error}); install ray[default] or pass --executor inline"
        ) from None
    return make_ray_executor(address=args.address)
