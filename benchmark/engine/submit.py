"""Runs on a remote Ray cluster through the Jobs API (``JobSubmissionClient``).

A *run* is one job spec writing to one output URI; its id is stable (derived from the spec hash
and the output), so submitting the same job to the same output again is the next *attempt* of
the same run, and the driver on the cluster resumes it from the commit markers. Each attempt is
one Ray job with a fresh submission id ``<run-id>-<n>``.

What travels: the project checkout as the job's ``working_dir`` (so actors run exactly the
submitter's code; VCS, virtualenvs, outputs and caches excluded), optionally pip requirements
(``none`` when the cluster image already has them, the default; ``project`` for the
dependencies in pyproject.toml; or a requirements file), and the job spec *as validated here*
(``--set`` applied) in the environment variable ``BENCHMARK_JOB_SPEC``, read by
``benchmark run -`` on the cluster: the spec cannot drift or go missing whatever the
working_dir holds. Ray sets ``RAY_ADDRESS`` for the entrypoint, so the run's driver connects
to its own cluster.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import shlex
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..config import JobSpec, spec_hash
from .ray_auth import AUTH_HINT, dashboard_headers

SPEC_VARIABLE = "BENCHMARK_JOB_SPEC"
UPLOAD_EXCLUDES = [
    ".git", ".venv", "venv", "runs", "build", "dist", ".whl", "*.egg-info",
    "**/__pycache__", "**/*.pyc", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".ipynb_checkpoints",
]
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


class SubmitError(Exception):
    """Something the user can fix (address, output, token); printed without a traceback."""


def project_root() -> Path:
    """The source checkout this package runs from: what the job's working_dir uploads."""
    root = Path(__file__).resolve().parents[2]
    if not ((root / "pyproject.toml").is_file() and (root / "benchmark" / "__init__.py").is_file()):
        raise SubmitError(
            f"{root} is not a source checkout of this project (installed package?); submit from a checkout, "
            "or pass --working-dir none when the cluster image has the package installed"
        )
    return root


def project_dependencies(root: Path) -> list[str]:
    return list(tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"])


def run_id_for(spec: JobSpec, out: str) -> str:
    """Stable across attempts: the same spec to the same output is the same run."""
    slug = re.sub(r"[^a-z0-9]+", "-", spec.name.lower()).strip("-") or "run"
    digest = hashlib.sha256(f"{spec_hash(spec)}\n{out}".encode()).hexdigest()[:10]
    return f"{slug}-{digest}"


def check_output(out: str) -> None:
    if "://" not in out and not Path(out).is_absolute():
        raise SubmitError(
            f"--out {out!r} is relative: on the cluster it would land in the job's temporary working_dir. "
            "Use an object store (s3://bucket/prefix, gs://…) or an absolute path on storage every node shares."
        )


@dataclass
class Submission:
    run_id: str
    submission_id: str
    out: str
    entrypoint: str
    runtime_env: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)


def build_submission(
    spec: JobSpec,
    out: str,
    attempt: int,
    *,
    job_file: str = "",
    new_run: bool = False,
    working_dir: str | None = "auto",
    pip: str = "none",
    env: Iterable[str] = (),
    environ: dict[str, str] | None = None,
    progress_every: float | None = None,
) -> Submission:
    """The job's driver has no terminal: it prints a progress line every ``progress_every``
    seconds (``benchmark run``'s default when None) into the job's log."""
    check_output(out)
    run_id = run_id_for(spec, out)
    command = ["python", "-m", "benchmark", "run", "-", "--out", out, "--executor", "ray", "--run-id", run_id]
    if progress_every is not None:
        command += ["--progress-every", f"{progress_every:g}"]
    if new_run:
        command.append("--new-run")
    entrypoint = f"printenv {SPEC_VARIABLE} | " + " ".join(shlex.quote(part) for part in command)
    env_vars = {SPEC_VARIABLE: json.dumps(spec.model_dump(mode="json"), separators=(",", ":"))}
    env_vars.update(forwarded_environment(env, environ))
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    if working_dir not in (None, "none"):
        root = project_root() if working_dir == "auto" else Path(working_dir).resolve()
        runtime_env.update(working_dir=str(root), excludes=list(UPLOAD_EXCLUDES))
        if pip == "project":
            runtime_env["pip"] = project_dependencies(root)
    if pip not in ("none", "project"):
        if not Path(pip).is_file():
            raise SubmitError(f"--pip {pip!r}: expected none, project or a requirements file")
        runtime_env["pip"] = str(Path(pip).resolve())
    metadata = {"run_id": run_id, "attempt": str(attempt), "out": out, "job": spec.name,
                "job_file": job_file, "spec_hash": spec_hash(spec)}
    return Submission(run_id, f"{run_id}-{attempt}", out, entrypoint, runtime_env, metadata)


def forwarded_environment(names: Iterable[str], environ: dict[str, str] | None = None) -> dict[str, str]:
    """``--env NAME`` (this shell's value) or ``--env NAME=VALUE``: explicit, never implicit, since
    runtime_env variables are visible to anyone who can read the cluster's job list."""
    environ = os.environ if environ is None else environ
    values = {}
    for item in names:
        name, sep, value = item.partition("=")
        if not sep:
            if name not in environ:
                raise SubmitError(f"--env {name}: not set in this environment")
            value = environ[name]
        values[name] = value
    return values


# -- the Jobs API -------------------------------------------------------------------------------
def dashboard_address(address: str | None) -> str:
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS", "")
    if not address.startswith(("http://", "https://")):
        raise SubmitError(
            "give the cluster's dashboard address, e.g. --address http://HEAD:8265 (or set RAY_API_SERVER_ADDRESS)"
        )
    return address.rstrip("/")


def jobs_client(address: str | None):
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    address = dashboard_address(address)
    try:
        return JobSubmissionClient(address, headers=dashboard_headers(address))
    except AuthenticationError as error:
        raise SubmitError(f"{address}: {str(error).splitlines()[0]}\n{AUTH_HINT}") from None
    except ConnectionError as error:
        raise SubmitError(f"{address}: cannot reach the Ray dashboard ({error})") from None


def attempts_of(client, run_id: str) -> dict[int, Any]:
    """The submissions of one run on this cluster, by attempt number."""
    pattern = re.compile(re.escape(run_id) + r"-(\d+)$")
    found = {}
    for job in client.list_jobs():
        match = pattern.match(job.submission_id or "")
        if match:
            found[int(match.group(1))] = job
    return found


def submit(client, spec: JobSpec, out: str, **options: Any) -> Submission:
    run_id = run_id_for(spec, out)
    previous = attempts_of(client, run_id)
    running = [job.submission_id for job in previous.values() if str(job.status.value) not in TERMINAL]
    if running:
        raise SubmitError(f"run {run_id} is still being worked on by {', '.join(running)}; stop it first "
                          f"(benchmark jobs stop {running[0]}) or wait for it")
    submission = build_submission(spec, out, max(previous, default=0) + 1, **options)
    client.submit_job(
        entrypoint=submission.entrypoint,
        submission_id=submission.submission_id,
        runtime_env=submission.runtime_env,
        metadata=submission.metadata,
    )
    return submission


def resolve_job(client, ident: str) -> str:
    """A submission id as given, or a run id: its latest attempt."""
    try:
        client.get_job_info(ident)
        return ident
    except RuntimeError:
        pass
    attempts = attempts_of(client, ident)
    if not attempts:
        raise SubmitError(f"no job or run {ident!r} on this cluster (benchmark jobs list shows them)")
    return attempts[max(attempts)].submission_id


def wait_for(client, submission_id: str, timeout: float | None = None, poll: float = 1.0) -> str:
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        status = str(client.get_job_status(submission_id).value)
        if status in TERMINAL or (deadline is not None and time.monotonic() > deadline):
            return status
        time.sleep(poll)


def follow_logs(client, submission_id: str, stream=None) -> None:
    """Print the job's log as it grows, until the job ends."""
    stream = stream or sys.stdout

    async def tail() -> None:
        async for lines in client.tail_job_logs(submission_id):
            stream.write(lines)
            stream.flush()

    asyncio.run(tail())
