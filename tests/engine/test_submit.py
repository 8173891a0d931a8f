"""`benchmark submit` and `benchmark jobs` against a real Ray head (`ray start --head`) started here,
with token authentication on as Ray >= 2.60 does by default; plus the submission's parts."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from benchmark.cli.main import main
from benchmark.config import validate_job
from benchmark.engine.ray_auth import dashboard_headers, is_local_address
from benchmark.engine.submit import SPEC_VARIABLE, SubmitError, build_submission, project_root, run_id_for

from .jobs import write_job
from .ray_support import RAY_JOB, assert_exactly_once, assert_same_results

ray = pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def head():
    """`ray start --head --block` in its own session and temp dir, token auth on (a token file of
    its own: ~/.ray is left alone). Stopped by signalling that process group: `ray stop` would
    stop every Ray on the machine, the test session's and other people's included."""
    # a short path: Ray's socket paths have a length limit
    with tempfile.TemporaryDirectory(prefix="bmh-", dir="/tmp", ignore_cleanup_errors=True) as name:
        yield from _head(Path(name))


def _head(folder: Path):
    token = folder / "token"
    token.write_text(secrets.token_hex(32))
    dashboard, gcs = free_port(), free_port()
    # nothing of this session's Ray settings, and no PYTHONPATH: the job imports the uploaded working_dir
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and k != "PYTHONPATH"}
    env.update(
        RAY_AUTH_TOKEN_PATH=str(token),  # a token exists, so `ray start --head` turns token mode on
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),  # the job's `python`
    )
    command = [
        str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
        "--dashboard-port", str(dashboard), "--ray-client-server-port", str(free_port()),
        "--dashboard-agent-listen-port", str(free_port()), "--num-cpus", "2", "--num-gpus", "0",
        "--temp-dir", str(folder),
    ]
    with open(folder / "head.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        # the port opens before the dashboard's modules are loaded (a loaded machine answers the first
        # requests with a closed connection): wait until the Jobs API itself answers
        jobs = urllib.request.Request(f"http://127.0.0.1:{dashboard}/api/jobs/",
                                      headers={"Authorization": f"Bearer {token.read_text()}"})
        while True:
            assert process.poll() is None, (folder / "head.log").read_text()
            try:
                with urllib.request.urlopen(jobs, timeout=5) as response:
                    if response.status == 200:
                        break
            except (OSError, http.client.HTTPException):
                pass
            assert time.monotonic() < deadline, "the dashboard's Jobs API did not come up"
            time.sleep(0.5)
        yield f"http://127.0.0.1:{dashboard}", token, f"127.0.0.1:{gcs}", folder
    finally:
        process.send_signal(signal.SIGTERM)  # `ray start --block` stops the node's processes
        try:
            process.wait(60)
        finally:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # whatever is left of this head only
            except ProcessLookupError:
                pass


@pytest.fixture
def client_token(head, monkeypatch):
    """The client side: no RAY_AUTH_MODE (as after a plain install), the local token where Ray looks."""
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(head[1]))
    return head[0]


def test_submit_wait_tables_logs_status_resubmit_and_stop(client_token, ray_reference, tmp_path, capsys) -> None:
    address, out = client_token, tmp_path / "out"
    job = write_job(tmp_path, {**RAY_JOB, "runtime": {**RAY_JOB["runtime"], "num_gpus": 0}})
    run_id = run_id_for(validate_job(RAY_JOB), str(out))  # runtime settings are not part of the run's identity

    assert main(["submit", str(job), "--address", address, "--out", str(out), "--wait", "--timeout", "400"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == f"{run_id}-1"
    assert f"{run_id}-1: SUCCEEDED" in captured.err
    assert_exactly_once(out)
    assert_same_results(out, ray_reference)

    assert main(["jobs", "status", f"{run_id}-1", "--address", address, "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["status"] == "SUCCEEDED"
    assert status["metadata"]["run_id"] == run_id and status["metadata"]["out"] == str(out)
    assert status["entrypoint"].startswith(f"printenv {SPEC_VARIABLE} | python -m benchmark run - --out")
    assert main(["jobs", "logs", f"{run_id}-1", "--address", address]) == 0
    logs = capsys.readouterr().out
    assert "6 shards, 0 already committed, 6 to run" in logs and "scheduling overhead" in logs
    assert "progress 100.0% | 18/18 image-states | 6.0/6 images" in logs  # the job's plain progress line
    assert "Started a local Ray instance" not in logs  # RAY_ADDRESS: the job's driver used its own cluster

    # the same submission again: a new attempt (fresh submission id) of the same run, which resumes
    assert main(["submit", str(job), "--address", address, "--out", str(out), "--wait", "--timeout", "400"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{run_id}-2"
    assert main(["jobs", "logs", run_id, "--address", address, "--follow"]) == 0  # a run id: its latest attempt
    assert "6 already committed, 0 to run" in capsys.readouterr().out

    assert main(["submit", str(job), "--address", address, "--out", str(out)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == f"{run_id}-3"
    assert main(["jobs", "stop", run_id, "--address", address, "--wait"]) == 0
    assert f"{run_id}-3: stop requested, now STOPPED" in capsys.readouterr().out
    assert main(["jobs", "status", run_id, "--address", address]) == 1  # stopped: not a success
    assert f"job       {run_id}-3: STOPPED" in capsys.readouterr().out
    assert main(["jobs", "list", run_id, "--address", address]) == 0
    listed = [line.split("\t")[:2] for line in capsys.readouterr().out.splitlines()]
    assert listed == [[f"{run_id}-1", "SUCCEEDED"], [f"{run_id}-2", "SUCCEEDED"], [f"{run_id}-3", "STOPPED"]]


def test_a_cluster_that_wants_a_token_gets_a_clear_message(client_token, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # set explicitly: obeyed, so no token is sent
    assert main(["jobs", "list", "--address", client_token]) == 2
    message = capsys.readouterr().err
    assert "401" in message or "Unauthorized" in message or "Authentication" in message
    assert "RAY_AUTH_MODE=token" in message and "RAY_AUTH_TOKEN" in message


def test_submission_parts(tmp_path) -> None:
    spec = validate_job(RAY_JOB)
    first = build_submission(spec, "s3://bucket/run", 1, job_file="job.yaml")
    again = build_submission(spec, "s3://bucket/run", 2)
    assert first.run_id == again.run_id == run_id_for(spec, "s3://bucket/run") != run_id_for(spec, "s3://bucket/other")
    assert (first.submission_id, again.submission_id) == (f"{first.run_id}-1", f"{first.run_id}-2")
    assert first.entrypoint == (
        f"printenv {SPEC_VARIABLE} | python -m benchmark run - --out s3://bucket/run --executor ray "
        f"--run-id {first.run_id}"
    )  # no --no-progress: without a terminal the driver logs a progress line every 30 s
    assert build_submission(spec, "s3://bucket/run", 1, progress_every=5).entrypoint.endswith(
        f"--run-id {first.run_id} --progress-every 5")
    assert validate_job(json.loads(first.runtime_env["env_vars"][SPEC_VARIABLE])) == spec
    assert first.runtime_env["working_dir"] == str(project_root())
    assert {".git", ".venv", "runs", "**/__pycache__"} <= set(first.runtime_env["excludes"])
    assert "pip" not in first.runtime_env  # default: the cluster image has the dependencies
    assert first.metadata == {"run_id": first.run_id, "attempt": "1", "out": "s3://bucket/run", "job": "ray-tiny",
                              "job_file": "job.yaml", "spec_hash": first.metadata["spec_hash"]}

    project = build_submission(spec, "/shared/run", 1, pip="project", new_run=True)
    assert "torch>=2.3" in project.runtime_env["pip"] and project.entrypoint.endswith("--new-run")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("zennit\n")
    assert build_submission(spec, "/shared/run", 1, pip=str(requirements)).runtime_env["pip"] == str(requirements)
    bare = build_submission(spec, "/shared/run", 1, working_dir="none", env=["A=1", "HOME"], environ={"HOME": "/h"})
    assert "working_dir" not in bare.runtime_env
    assert {k: v for k, v in bare.runtime_env["env_vars"].items() if k != SPEC_VARIABLE} == {
        "A": "1", "HOME": "/h", "RAY_JOB_STOP_WAIT_TIME_S": "35"}  # `jobs stop` leaves the driver its grace period
    with pytest.raises(SubmitError, match="relative"):
        build_submission(spec, "runs/tiny", 1)
    with pytest.raises(SubmitError, match="not set"):
        build_submission(spec, "/shared/run", 1, env=["SURELY_NOT_SET_ANYWHERE"], environ={})


def test_local_token_goes_to_local_addresses_only(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc123")
    assert is_local_address("http://127.0.0.1:8265") and is_local_address("localhost:6379")
    assert not is_local_address("http://10.20.30.40:8265") and not is_local_address("https://ray.example.org")
    assert dashboard_headers("http://127.0.0.1:8265") == {"Authorization": "Bearer abc123"}
    assert dashboard_headers("http://10.20.30.40:8265") == {}  # never sent to a remote cluster unasked
    monkeypatch.setenv("RAY_AUTH_MODE", "token")  # explicit: Ray's client adds the header itself
    assert dashboard_headers("http://127.0.0.1:8265") == {}
    monkeypatch.delenv("RAY_AUTH_MODE")
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "none"))
    assert dashboard_headers("http://127.0.0.1:8265") == {}  # no token: nothing to send


def test_run_with_the_address_of_a_local_head_that_wants_a_token(head, tmp_path, monkeypatch) -> None:
    """`benchmark run --address 127.0.0.1:PORT` (the GCS, no Jobs API) with RAY_AUTH_MODE unset: Ray
    itself would not send the token to an explicit address; the local token is used."""
    _, token, gcs, _ = head
    small = {**RAY_JOB, "dataset": {**RAY_JOB["dataset"], "synthetic_images": 2},
             "runtime": {**RAY_JOB["runtime"], "num_gpus": 0}}
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(RAY_AUTH_TOKEN_PATH=str(token), PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-m", "benchmark", "run", str(write_job(tmp_path, small)), "--out", str(out),
         "--address", gcs, "--no-progress"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert "Connected to Ray cluster" in done.stderr and "Started a local Ray instance" not in done.stderr
    assert_exactly_once(out, [0, 1])


def test_follow_up_commands_work_when_pasted(tmp_path) -> None:
    """What `benchmark submit` prints next: each line parses as a benchmark command with the same
    cluster address and output (quoted: object-store URIs carry '?' and '&')."""
    import shlex

    from benchmark.cli.main import build_parser
    from benchmark.cli.submit import follow_up, resubmit_command

    out = "s3://bucket/runs/x?endpoint_override=127.0.0.1:9000&scheme=http"
    address = "http://10.0.0.1:8265"
    argv = ["submit", "jobs/smoke.yaml", "--address", address, "--out", out, "--set", "randomization.seeds=[0, 1]",
            "--env", "AWS_ENDPOINT_URL"]
    args = build_parser().parse_args(argv)
    submission = build_submission(validate_job(RAY_JOB), out, 2)
    text = follow_up(submission, address, resubmit_command(args, address, out))
    commands = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].split("   (")[0].strip()
                for line in text.splitlines()[1:]}
    assert set(commands) == {"follow", "status", "results", "stop", "resume"}
    for name, command in commands.items():
        words = shlex.split(command)
        assert words[0] == "benchmark"
        parsed = build_parser().parse_args(words[1:])
        if name in ("follow", "status", "stop"):
            assert parsed.address == address and parsed.id == submission.submission_id
        elif name == "results":
            assert parsed.out == out
        else:
            assert vars(parsed) == vars(args)  # the same submission again: a new attempt that resumes


# -- issue 16: one writer per output, and what travels ---------------------------------------------
def small_job(tmp_path: Path, seeds: list[int] = [0], name: str = "job.yaml") -> Path:
    spec = {**RAY_JOB, "dataset": {**RAY_JOB["dataset"], "synthetic_images": 2},
            "randomization": {"seeds": seeds, "max_boundaries": 1}, "runtime": {**RAY_JOB["runtime"], "num_gpus": 0}}
    return write_job(tmp_path, spec, name)


def test_a_different_spec_to_a_busy_output_is_refused(client_token, tmp_path, capsys) -> None:
    """Item 1: a second submission to an --out a job is still writing is refused, whatever its spec
    (a different spec has another run id, so the same-run check did not see it); so is one whose
    output, readable from here, holds a live lease."""
    from benchmark.engine.lease import OutputLease
    from benchmark.results import OutputStore

    address, out = client_token, tmp_path / "out"
    assert main(["submit", str(small_job(tmp_path)), "--address", address, "--out", str(out)]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    try:
        assert main(["submit", str(small_job(tmp_path, [1], "other.yaml")), "--address", address, "--out", str(out)]) == 2
        message = capsys.readouterr().err
        assert f"is being written by {first}" in message and "one driver writes an output at a time" in message
    finally:
        assert main(["jobs", "stop", first, "--address", address, "--wait"]) == 0
    capsys.readouterr()
    busy = tmp_path / "busy"
    with OutputLease.acquire(OutputStore(str(busy)), name="local-run", spec_hash="0" * 16):
        assert main(["submit", str(small_job(tmp_path)), "--address", address, "--out", str(busy)]) == 2
    assert "is being written by another driver: run 'local-run'" in capsys.readouterr().err


def make_checkout(folder: Path) -> Path:
    """A copy of this project's code as a user's checkout, with what must not travel planted in it."""
    for part in ("benchmark", "results_schema"):
        shutil.copytree(ROOT / part, folder / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", folder)
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    (folder / ".gitignore").write_text("/data/\n")
    (folder / ".env").write_text("AWS_SECRET_ACCESS_KEY=hunter2\n")
    (folder / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (folder / "secrets").mkdir()
    (folder / "secrets" / "credentials.json").write_text('{"token": "x"}')
    (folder / "data").mkdir()
    (folder / "data" / "blob.bin").write_bytes(os.urandom(5 * 2**20))  # ignored by .gitignore
    (folder / "runs" / "old" / "_commits").mkdir(parents=True)
    (folder / "runs" / "old" / "manifest.json").write_text("{}")
    (folder / "old-output" / "_commits").mkdir(parents=True)  # a run output anywhere
    (folder / "old-output" / "manifest.json").write_text("{}")
    (folder / "env" / "lib").mkdir(parents=True)  # a virtualenv by another name
    (folder / "env" / "pyvenv.cfg").write_text("home = /usr\n")
    (folder / "env" / "lib" / "big.so").write_bytes(b"x" * 1024)
    os.mkfifo(folder / "stuck.JPEG")  # zipping a named pipe would block forever
    return folder


def uploaded_packages(head_folder: Path) -> list[Path]:
    """Unpacked working_dir packages of the head's session (``session_latest`` links to it: once)."""
    found = head_folder.glob("session_*/runtime_resources/working_dir_files/*")
    return sorted({p.resolve() for p in found if p.is_dir()})


@pytest.mark.skipif(not hasattr(os, "mkfifo") or shutil.which("git") is None, reason="needs git and named pipes")
def test_only_the_code_travels_and_secrets_stop_the_submission(client_token, head, tmp_path, capsys) -> None:
    """Item 7: `benchmark submit` uploaded the whole folder, keys and blobs included."""
    address, out, checkout = client_token, tmp_path / "out", make_checkout(tmp_path / "checkout")
    job = small_job(tmp_path)
    before = {p.name for p in uploaded_packages(head[3])}
    assert main(["submit", str(job), "--address", address, "--out", str(out), "--working-dir", str(checkout)]) == 2
    refused = capsys.readouterr().err
    for secret in (".env", "id_rsa", "secrets/credentials.json"):
        assert f"\n  {secret}" in refused, refused
    assert "data/blob.bin" not in refused and not out.exists()
    assert main(["jobs", "list", run_id_for(validate_job(yaml.safe_load(job.read_text())), str(out)),
                 "--address", address]) == 0
    assert capsys.readouterr().out.strip() == ""  # nothing was submitted

    with open(checkout / ".gitignore", "a") as ignore:
        ignore.write(".env\nid_rsa\nsecrets/\n")
    assert main(["submit", str(job), "--address", address, "--out", str(out), "--working-dir", str(checkout),
                 "--wait", "--timeout", "400"]) == 0
    err = capsys.readouterr().err
    code = sorted(p.relative_to(checkout).as_posix() for p in checkout.rglob("*")
                  if p.is_file() and p.parts[len(checkout.parts)] in ("benchmark", "results_schema"))
    expected = sorted(code + ["pyproject.toml"])  # the ignore files are applied here, not shipped
    size = sum((checkout / name).stat().st_size for name in expected)
    assert f"uploading {checkout}: {len(expected)} files, {size / 2**20:.1f} MB" in err
    (package,) = [p for p in uploaded_packages(head[3]) if p.name not in before]
    arrived = sorted(p.relative_to(package).as_posix() for p in package.rglob("*") if not p.is_dir())
    assert arrived == expected
    assert_exactly_once(out, [0, 1])
