"""DESIGN §11: the driver killed with SIGKILL mid-run, then the same command again; the final
tables equal an uninterrupted run's. Runs `benchmark run` as a user does: its own process, the
default executor on an embedded Ray."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.results import OutputStore, committed_shards

from .jobs import write_job
from .ray_support import RAY_JOB, SHARDS, assert_exactly_once, assert_same_results

pytest.importorskip("ray")
ROOT = Path(__file__).resolve().parents[2]


def session_processes(session: int) -> dict[int, str]:
    """Processes still alive in the killed driver's session (its embedded Ray), with their commands."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getsid(int(entry.name)) == session:
                    found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, ProcessLookupError):
                pass
    return found


def cluster_core(session: int) -> list[str]:
    """GCS, raylet and workers (actors) of the embedded cluster. Ray's per-node agents are left
    out: they notice their raylet is gone on their own, a minute or two later."""
    return [command for command in session_processes(session).values() if "Agent" not in command]


def test_sigkilled_driver_then_the_same_command_resumes_to_identical_tables(ray_reference, tmp_path) -> None:
    out = tmp_path / "out"
    # one actor, one shard at a time (execution-only settings: the spec hash is the reference's)
    command = [sys.executable, "-m", "benchmark", "run", str(write_job(tmp_path, RAY_JOB)), "--out", str(out),
               "--no-progress", "--set", "runtime.actors=1", "--set", "runtime.in_flight=1"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    driver = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "_commits").is_dir() or not any((out / "_commits").iterdir()):
            assert driver.poll() is None, driver.stderr.read().decode()
            assert time.monotonic() < deadline, "no shard was committed"
            time.sleep(0.02)
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        killed_with = len(committed_shards(OutputStore(str(out))))
        assert 1 <= killed_with < len(SHARDS), "the run was not interrupted"

        # the embedded cluster and its actors go with their driver (Ray's reaper)
        deadline = time.monotonic() + 60
        while cluster_core(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cluster_core(driver.pid) == []
    finally:
        for pid in session_processes(driver.pid):  # only what this test started
            os.kill(pid, signal.SIGKILL)
        driver.stderr.close()

    again = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    resumed = re.search(r"(\d+) already committed, (\d+) to run", again.stderr)
    assert resumed and int(resumed[1]) >= killed_with and int(resumed[1]) + int(resumed[2]) == len(SHARDS)
    assert "no GPU on this machine: actors run on CPU" in again.stderr  # the job asks for GPUs; CPU fallback
    assert_exactly_once(out)
    assert_same_results(out, ray_reference)
