"""``benchmark submit JOB.yaml --address http://HEAD:8265``: run a job on a Ray cluster (Jobs API)."""

from __future__ import annotations

import argparse
import shlex
import sys

from .main import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "submit", help="submit a job to a Ray cluster; submitting it again to the same --out resumes it"
    )
    parser.add_argument("job", help="job spec (YAML); validated here, before anything is sent")
    parser.add_argument("--address", help="the cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS)")
    parser.add_argument("--out", help="output URI every node can write: s3://bucket/prefix, gs://…, or an absolute "
                                      "shared path (default: the job's output)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a spec value (repeatable)")
    parser.add_argument("--new-run", action="store_true", help="discard results of a different spec in --out")
    parser.add_argument("--pip", default="none", metavar="none|project|FILE",
                        help="pip requirements installed for the job: none (default; the cluster image has them), "
                             "project (the dependencies in pyproject.toml) or a requirements file")
    parser.add_argument("--working-dir", default="auto", metavar="auto|none|DIR",
                        help="code uploaded as the job's working_dir: auto (this checkout, default), none "
                             "(the cluster image has the package), or a directory; only what git would commit "
                             "travels (no VCS, venvs, run outputs), and files that look like secrets stop the submission")
    parser.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]",
                        help="environment variable for the job (e.g. AWS_ENDPOINT_URL); repeatable")
    parser.add_argument("--progress-every", type=float, default=None, metavar="SECONDS",
                        help="how often the job logs a progress line (default 30)")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the job to end; exit status 0 only if it succeeded")
    parser.add_argument("--timeout", type=float, default=None,
                        help="with --wait: give up waiting after this many seconds")
    parser.set_defaults(handler=submit_job)


def resubmit_command(args: argparse.Namespace, address: str, out: str) -> str:
    """The submit command again, as given (it resumes the run as a new attempt)."""
    parts = ["benchmark", "submit", args.job, "--address", address, "--out", out]
    for override in args.overrides:
        parts += ["--set", override]
    for variable in args.env:
        parts += ["--env", variable]
    if args.pip != "none":
        parts += ["--pip", args.pip]
    if args.working_dir != "auto":
        parts += ["--working-dir", args.working_dir]
    return " ".join(shlex.quote(part) for part in parts)


def follow_up(submission, address: str, resubmit: str) -> str:
    """What to run next, as commands that work when pasted (quoted, with the cluster's address)."""
    quote = shlex.quote
    on = f"--address {quote(address)}"
    lines = [
        f"submitted run {submission.run_id} (attempt {submission.metadata['attempt']}) -> {submission.out}",
        f"  follow:  benchmark jobs logs {submission.submission_id} --follow {on}",
        f"  status:  benchmark jobs status {submission.submission_id} {on}",
        f"  results: benchmark status {quote(submission.out)}",
        f"  stop:    benchmark jobs stop {submission.submission_id} {on}",
        f"  resume:  {resubmit}   (a new attempt of run {submission.run_id})",
    ]
    return "\n".join(lines)


def submit_job(args: argparse.Namespace) -> int:
    from ..config import load_job
    from ..engine.driver import output_uri
    from ..engine.submit import dashboard_address, jobs_client, submit, wait_for

    spec = load_job(args.job, args.overrides)
    out = output_uri(spec, args.out)
    if args.progress_every is not None and args.progress_every <= 0:
        raise UserError(f"--progress-every {args.progress_every:g}: expected a positive number of seconds")
    client = jobs_client(args.address)
    submission = submit(
        client, spec, out, job_file=args.job, new_run=args.new_run, working_dir=args.working_dir,
        pip=args.pip, env=args.env, progress_every=args.progress_every,
        announce=lambda line: print(line, file=sys.stderr),
    )
    print(submission.submission_id)
    address = dashboard_address(args.address)
    print(follow_up(submission, address, resubmit_command(args, address, out)), file=sys.stderr)
    if not args.wait:
        return 0
    final = wait_for(client, submission.submission_id, timeout=args.timeout)
    print(f"{submission.submission_id}: {final}", file=sys.stderr)
    return 0 if final == "SUCCEEDED" else 1
