"""``benchmark jobs status|logs|stop|list``: the submissions of ``benchmark submit`` on a cluster.

ID is a submission id (``<run-id>-<n>``) or a run id, which means its latest attempt."""

from __future__ import annotations

import argparse
import json
from datetime import datetime


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("jobs", help="status, logs, stop and list of submitted jobs")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_text in (("status", "state of a job"), ("logs", "a job's driver output"), ("stop", "stop a job")):
        action = actions.add_parser(name, help=help_text)
        action.add_argument("id", help="submission id, or a run id (its latest attempt)")
        _address(action)
        if name == "logs":
            action.add_argument("--follow", action="store_true", help="keep printing until the job ends")
        if name == "status":
            action.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "stop":
            action.add_argument("--wait", action="store_true", help="wait until it has stopped")
    listing = actions.add_parser("list", help="submissions on the cluster, newest last")
    listing.add_argument("run_id", nargs="?", help="only the attempts of this run")
    _address(listing)
    parser.set_defaults(handler=jobs)


def _address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", help="the cluster's dashboard, http://HEAD:8265 (default: RAY_API_SERVER_ADDRESS)")


def _time(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def jobs(args: argparse.Namespace) -> int:
    from ..engine.submit import TERMINAL, attempts_of, follow_logs, jobs_client, resolve_job, wait_for

    client = jobs_client(args.address)
    if args.action == "list":
        found = attempts_of(client, args.run_id).values() if args.run_id else client.list_jobs()
        for job in sorted(found, key=lambda j: j.start_time or 0):
            meta = job.metadata or {}
            name = job.submission_id or job.job_id
            print(f"{name}\t{job.status.value}\t{_time(job.start_time)}\t{meta.get('out', '')}")
        return 0
    submission_id = resolve_job(client, args.id)
    if args.action == "logs":
        if args.follow:
            follow_logs(client, submission_id)
        else:
            print(client.get_job_logs(submission_id), end="")
        return 0
    if args.action == "stop":
        stopped = client.stop_job(submission_id)
        if args.wait:
            final = wait_for(client, submission_id, timeout=120)
        else:
            final = client.get_job_status(submission_id).value
        print(f"{submission_id}: {'stop requested' if stopped else 'was not running'}, now {final}")
        return 0
    info = client.get_job_info(submission_id)
    status = str(info.status.value)
    if args.json:
        print(json.dumps({"submission_id": submission_id, "status": status, "message": info.message,
                          "metadata": info.metadata, "entrypoint": info.entrypoint,
                          "start_time": info.start_time, "end_time": info.end_time}, indent=2))
    else:
        meta = info.metadata or {}
        print(f"job       {submission_id}: {status}")
        print(f"run       {meta.get('run_id', '-')} attempt {meta.get('attempt', '-')} -> {meta.get('out', '-')}")
        print(f"started   {_time(info.start_time)}, ended {_time(info.end_time)}")
        if info.message:
            print(f"message   {info.message}")
    return 1 if status in TERMINAL and status != "SUCCEEDED" else 0
