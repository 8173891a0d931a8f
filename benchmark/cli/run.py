"""``benchmark run JOB.yaml``: plan, run (inline or on Ray), resume, summarise.

The whole run holds the output's lease (``engine.lease``: one driver per output) and handles
SIGTERM/SIGINT (``engine.signals``): stop dispatching, let running shards finish within the
grace period, release the lease, say what was kept and how to resume, exit 128 + signal.
"""

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
    parser.add_argument("--lease-expiry", type=float, default=None, metavar="SECONDS",
                        help="a lease on --out whose holder sent no heartbeat for this long is taken over "
                             "(default 120; on the same host a holder whose process is gone is taken over at once)")
    parser.add_argument("--stop-grace", type=float, default=None, metavar="SECONDS",
                        help="after SIGTERM/SIGINT, running shards get this long to finish before they are "
                             "abandoned (default 25)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..config import spec_hash
    from ..engine.driver import output_uri
    from ..engine.lease import DEFAULT_EXPIRY, OutputLease
    from ..engine.signals import DEFAULT_GRACE, StopNow, StopRequest
    from ..results import OutputStore

    spec = load_job_argument(args.job, args.overrides)
    stop = StopRequest(DEFAULT_GRACE if args.stop_grace is None else args.stop_grace).install()
    uri = output_uri(spec, args.out)
    try:
        with OutputLease.acquire(
            OutputStore(uri), name=spec.name, spec_hash=spec_hash(spec), run_id=args.run_id,
            expiry=DEFAULT_EXPIRY if args.lease_expiry is None else args.lease_expiry,
            command=resume_command(args, uri, new_run=args.new_run),
            on_lost=lambda reason: stop.request(f"stopping: {reason}"),
        ) as lease:
            if lease.took_over is not None:
                print(f"took over the output's lease from {lease.took_over.describe()} ({lease.stale_reason})",
                      file=sys.stderr)
            return run_holding_the_lease(args, spec, uri, stop, lease)
    except StopNow:  # stopped before any shard ran (still preparing when the grace period ended)
        print(f"stopped before any shard ran; nothing was written. Resume: {resume_command(args, uri)}", file=sys.stderr)
        return stop.exit_code
    finally:
        stop.uninstall()


def run_holding_the_lease(args: argparse.Namespace, spec, uri: str, stop, lease) -> int:
    from ..engine.driver import finish_run, prepare_run
    from ..engine.progress import Progress
    from ..engine.status import format_scheduling
    from ..experiments.walk import walked_states
    from ..results.summary import format_summary

    state = prepare_run(spec, uri, new_run=args.new_run, run_id=args.run_id)
    state.lease_token = lease.info.token
    lease.renew(run_id=state.manifest["run_id"])
    pending_images = sum(len(t) for t in state.pending)
    stages = len(state.manifest["randomization_plan"]["stages"])
    states = walked_states(spec, stages)
    print(
        f"run '{spec.name}' ({state.manifest['run_id']}, spec {state.manifest['spec_hash']}) -> {state.out}\n"
        f"  {len(state.tasks)} shards, {len(state.committed)} already committed, {len(state.pending)} to run "
        f"({pending_images} images x {states} model states), {stages} randomization stages",
        file=sys.stderr,
    )
    for note in state.notes:
        print(f"  {note}", file=sys.stderr)
    progress = Progress(pending_images, len(state.tasks), len(state.committed), enabled=not args.no_progress,
                        states=states, every=_progress_every(args.progress_every))
    started = time.perf_counter()
    try:
        with progress.capturing():
            outcome = _executor(args)(state, progress)
    finally:
        progress.close()
    manifest = finish_run(state, outcome, time.perf_counter() - started)
    print(format_summary(state.store))
    scheduling = format_scheduling(outcome.details)
    if scheduling:
        print(scheduling)
    if stop.requested:
        print(describe_stop(stop.reason, outcome.details.get("stopped", {}), manifest, state.store.display(),
                            resume_command(args, uri)), file=sys.stderr)
        return stop.exit_code
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


def resume_command(args: argparse.Namespace, uri: str, new_run: bool = False) -> str:
    """The command that resumes this run: this one, with the output spelled out and without --new-run."""
    import shlex

    if args.job == "-":
        return "the same `benchmark submit` (job and --out) again"
    words = ["benchmark", "run", args.job, "--out", args.out or uri]
    for item in args.overrides:
        words += ["--set", item]
    for flag, value, default in (("--executor", args.executor, "ray"), ("--address", args.address, None),
                                 ("--lease-expiry", args.lease_expiry, None), ("--stop-grace", args.stop_grace, None),
                                 ("--progress-every", args.progress_every, None)):
        if value != default:
            words += [flag, format(value, "g") if isinstance(value, float) else str(value)]
    if args.no_progress:
        words.append("--no-progress")
    if new_run:
        words.append("--new-run")
    return shlex.join(words)


def describe_stop(reason: str | None, stopped: dict, manifest: dict, out: str, command: str) -> str:
    """What a stopped run kept, what it dropped, and how to go on."""
    abandoned, not_started = stopped.get("abandoned", []), stopped.get("not_started", [])
    lines = [
        f"stopped ({reason}): {manifest['shards_committed']} of {manifest['shards_total']} shards are committed and "
        f"kept in {out}",
    ]
    if abandoned:
        lines.append(f"  abandoned while running (not committed, nothing of them is visible): shards {_ids(abandoned)}")
    if not_started:
        lines.append(f"  not started: shards {_ids(not_started)}")
    lines.append(f"  the output's lease is released; resume with:\n    {command}")
    return "\n".join(lines)


def _ids(shards: list[int]) -> str:
    return ", ".join(str(s) for s in shards[:20]) + (f" … ({len(shards)} in all)" if len(shards) > 20 else "")


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
