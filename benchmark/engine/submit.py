"""Runs on a remote Ray cluster through the Jobs API (``JobSubmissionClient``).

A *run* is one job spec writing to one output URI; its id is stable (derived from the spec hash
and the output), so submitting the same job to the same output again is the next *attempt* of
the same run, and the driver on the cluster resumes it from the commit markers. Each attempt is
one Ray job with a fresh submission id ``<run-id>-<n>``.

What travels: the project checkout as the job's ``working_dir`` (so actors run exactly the
submitter's code), as the explicit file list of ``engine.upload``: what git would commit, without
VCS data, virtualenvs, run outputs and caches, and never a file that looks like a secret (the
submission is refused, naming it); optionally pip requirements
(``none`` when the cluster image already has them, the default; ``project`` for the
dependencies in pyproject.toml; or a requirements file), and the job spec *as validated here*
(``--set`` applied) in the environment variable ``BENCHMARK_JOB_SPEC``, read by
``benchmark run -`` on the cluster: the spec cannot drift or go missing whatever the
working_dir holds. Ray sets ``RAY_ADDRESS`` for the entrypoint, so the run's driver connects
to its own cluster.

One driver writes an output at a time: a submission is refused while a job of this cluster is
still writing the same ``--out`` (whatever its spec), or while the output, when it can be read
from here, holds a live lease (``engine.lease``) or a run of another spec (without ``--new-run``).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from .signals import DEFAULT_GRACE
from .upload import Upload, UploadRefused, collect, staged

SPEC_VARIABLE = "BENCHMARK_JOB_SPEC"
STOP_WAIT_VARIABLE = "RAY_JOB_STOP_WAIT_TIME_S"
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
    upload: Upload | None = None  # the working_dir's files, when code is uploaded


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
    env_vars = {SPEC_VARIABLE: "",
                # `benchmark jobs stop` sends SIGTERM, then SIGKILL after this many seconds (Ray's default: 3):
                # leave the driver its grace period to stop in order (engine.signals)
                STOP_WAIT_VARIABLE: str(int(DEFAULT_GRACE) + 10)}
    env_vars.update(forwarded_environment(env, environ))
    runtime_env: dict[str, Any] = {"env_vars": env_vars}
    shipped = spec.model_dump(mode="json")
    upload = None
    root = None
    if working_dir not in (None, "none"):
        root = project_root() if working_dir == "auto" else Path(working_dir).resolve()
        shipped = code_in_working_dir(spec, shipped, root)
        try:
            upload = collect(root)
        except UploadRefused as error:
            raise SubmitError(str(error)) from None
    env_vars[SPEC_VARIABLE] = json.dumps(shipped, separators=(",", ":"))
    if root is not None:
        runtime_env.update(working_dir=str(root), excludes=list(UPLOAD_EXCLUDES))
        if pip == "project":
            runtime_env["pip"] = project_dependencies(root)
    if pip not in ("none", "project"):
        if not Path(pip).is_file():
            raise SubmitError(f"--pip {pip!r}: expected none, project or a requirements file")
        runtime_env["pip"] = str(Path(pip).resolve())
    metadata = {"run_id": run_id, "attempt": str(attempt), "out": out, "job": spec.name,
                "job_file": job_file, "spec_hash": spec_hash(spec)}
    return Submission(run_id, f"{run_id}-{attempt}", out, entrypoint, runtime_env, metadata, upload)


def code_in_working_dir(spec: JobSpec, data: dict[str, Any], root: Path) -> dict[str, Any]:
    """The job's own code (a model factory, callable methods) must travel in the working_dir: a file is
    renamed relative to it (the driver on the cluster runs there); anything outside it is refused."""
    from ..usercode import UserCodeError, parse_ref, resolve_file, shipment_for, references

    renamed: dict[str, str] = {}
    for text in references(spec):
        ref = parse_ref(text)
        assert ref is not None
        if ref.is_file:
            path = resolve_file(ref).resolve()
            if not path.is_relative_to(root):
                raise SubmitError(
                    f"{text}: {path} is outside the submitted working_dir {root}; move it into the checkout "
                    "(or name an installed package's function)"
                )
            renamed[text] = f"{path.relative_to(root).as_posix()}:{ref.attribute}"
            continue
        try:
            packages = shipment_for([text]).modules
        except UserCodeError as error:
            raise SubmitError(f"{text}: {error}") from None
        outside = [folder for folder in packages.values() if not Path(folder).resolve().is_relative_to(root)]
        if outside:
            raise SubmitError(
                f"{text}: {outside[0]} is neither installed nor inside the submitted working_dir {root}; "
                "install the package in the cluster's image, or move it into the checkout"
            )
    if renamed:
        data = json.loads(json.dumps(data))
        data["model"]["name"] = renamed.get(data["model"]["name"], data["model"]["name"])
        for method in data["methods"]:
            method["name"] = renamed.get(method["name"], method["name"])
    return data


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


def writers_of(client, out: str) -> list[Any]:
    """Jobs of this cluster that are still writing ``out`` (any run, any spec)."""
    return [job for job in client.list_jobs()
            if (job.metadata or {}).get("out") == out and str(job.status.value) not in TERMINAL]


def check_output_from_here(spec: JobSpec, out: str, new_run: bool) -> None:
    """The checks the driver on the cluster makes, made before submitting where the output can be
    read from this machine (an object store with credentials here, a shared path mounted here)."""
    from ..results.store import MANIFEST, OutputStore
    from .lease import read_lease
    from .manifest import check_resume

    try:
        store = OutputStore(out)
        lease = read_lease(store)
        manifest = store.read_json(MANIFEST)
    except Exception:  # not reachable from here: the driver on the cluster checks
        return
    if lease is not None and lease.stale() is None:
        raise SubmitError(f"{out} is being written by another driver: {lease.describe()}.\n"
                          "One driver writes an output at a time; wait for it, stop it, or choose another --out.")
    if manifest is not None and not new_run:
        check_resume(manifest, spec)


def submit(client, spec: JobSpec, out: str, announce=None, **options: Any) -> Submission:
    """Submit one attempt of the run; ``announce`` gets one line about the upload before it goes."""
    run_id = run_id_for(spec, out)
    previous = attempts_of(client, run_id)
    running = [job.submission_id for job in previous.values() if str(job.status.value) not in TERMINAL]
    if running:
        raise SubmitError(f"run {run_id} is still being worked on by {', '.join(running)}; stop it first "
                          f"(benchmark jobs stop {running[0]}) or wait for it")
    others = writers_of(client, out)
    if others:
        job = others[0]
        metadata = job.metadata or {}
        raise SubmitError(
            f"{out} is being written by {job.submission_id} (run {metadata.get('run_id')}, job "
            f"'{metadata.get('job')}', spec {metadata.get('spec_hash')}, {job.status.value}); one driver writes an "
            f"output at a time: stop it first (benchmark jobs stop {job.submission_id}), wait for it, or choose "
            "another --out"
        )
    check_output_from_here(spec, out, options.get("new_run", False))
    submission = build_submission(spec, out, max(previous, default=0) + 1, **options)
    with contextlib.ExitStack() as stack:
        runtime_env = dict(submission.runtime_env)
        if submission.upload is not None:
            if announce is not None:
                announce(submission.upload.describe())
            runtime_env["working_dir"] = str(stack.enter_context(staged(submission.upload)))
        client.submit_job(
            entrypoint=submission.entrypoint,
            submission_id=submission.submission_id,
            runtime_env=runtime_env,
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
