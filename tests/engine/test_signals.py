"""Issue 16 item 5: SIGTERM (what schedulers and Kubernetes send) ended in a Ray stack dump and
SIGABRT; SIGINT printed only "interrupted". Both now stop dispatching, let running shards finish
(or abandon them when the grace period is over), release the output's lease, say what was kept
and the exact command that resumes, and exit 143 / 130. Real driver processes, real signals, for
the inline and the Ray executor; the printed command then resumes to the uninterrupted tables."""

from __future__ import annotations

import os
import signal
import time

import pytest

from benchmark.engine.lease import read_lease
from benchmark.results import OutputStore

from .drivers import QUICK, committed, finish, globbed_shards, resume_command, start, wait_until
from .jobs import write_job
from .ray_support import RAY_JOB, SHARDS, assert_exactly_once, assert_same_results
from .test_driver_kill import cluster_core, session_processes

EXIT = {signal.SIGTERM: 143, signal.SIGINT: 130}


def assert_stopped_cleanly(code: int, err: str, signum: int, out: str) -> None:
    assert code == EXIT[signum], err
    assert f"stopped (received {signal.Signals(signum).name})" in err, err
    assert "the output's lease is released; resume with:" in err
    assert "Traceback" not in err and "SIGABRT" not in err and "Aborted" not in err, err
    assert read_lease(OutputStore(out)) is None
    assert globbed_shards(out) == committed(out)  # nothing uncommitted left for a plain glob


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_inline_driver_stops_on_a_signal_and_resumes(tmp_path, signum) -> None:
    out = str(tmp_path / "out")
    job = write_job(tmp_path, QUICK)
    driver = start(job, out, "--executor", "inline")
    try:
        wait_until(lambda: committed(out), driver, what="the first commit")
        driver.send_signal(signum)
        code, _, err = finish(driver, timeout=300)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_stopped_cleanly(code, err, signum, out)
    kept = committed(out)
    total = QUICK["dataset"]["synthetic_images"]
    assert 1 <= len(kept) < total and f"{len(kept)} of {total} shards are committed" in err
    assert "not started: shards" in err
    command = resume_command(err)
    if signum != signal.SIGTERM:
        return  # one resume is enough
    assert "--executor inline" in " ".join(command) and f"--out {out}" in " ".join(command)
    again = finish(start_command(command), timeout=600)
    assert again[0] == 0, again[2]
    assert f"{len(kept)} already committed, {total - len(kept)} to run" in again[2]
    assert_exactly_once(out, list(range(total)))


def start_command(command: list[str]):
    import subprocess

    from .drivers import ROOT, environment

    return subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def test_a_running_shard_is_abandoned_when_the_grace_period_ends(tmp_path) -> None:
    """One shard that takes minutes; a 2 s grace period: the driver does not wait for it."""
    out = str(tmp_path / "out")
    long = {**QUICK, "dataset": {**QUICK["dataset"], "synthetic_images": 64, "shard_size": 64},
            "methods": [{"name": "integrated_gradients", "steps": 64}]}
    driver = start(write_job(tmp_path, long), out, "--executor", "inline", "--stop-grace", "2")
    try:
        wait_until(lambda: os.path.exists(os.path.join(out, "manifest.json")), driver, what="the manifest")
        time.sleep(8)  # the worker builds its model, then starts the shard
        driver.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        code, _, err = finish(driver, timeout=300)
        waited = time.monotonic() - signalled
    finally:
        if driver.poll() is None:
            driver.kill()
    assert_stopped_cleanly(code, err, signal.SIGTERM, out)
    assert "abandoned while running (not committed, nothing of them is visible): shards 0" in err
    assert committed(out) == [] and waited < 120  # not the minutes the shard needs


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_ray_driver_stops_on_a_signal_and_resumes(ray_reference, tmp_path, signum) -> None:
    """The default executor on an embedded Ray: one actor with two shards queued. The queued one
    is taken back, the running one finishes, the embedded cluster goes, the lease is released."""
    out = str(tmp_path / "out")
    job = write_job(tmp_path, RAY_JOB)
    driver = start(job, out, "--set", "runtime.actors=1", "--set", "runtime.in_flight=2")
    try:
        wait_until(lambda: committed(out), driver, timeout=300, what="the first commit")
        driver.send_signal(signum)
        code, _, err = finish(driver, timeout=300)
        deadline = time.monotonic() + 60  # the embedded cluster and its actor go with the driver
        while cluster_core(driver.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert cluster_core(driver.pid) == []
    finally:
        if driver.poll() is None:
            driver.kill()
        for pid in session_processes(driver.pid):  # only what this test started
            os.kill(pid, signal.SIGKILL)
    assert_stopped_cleanly(code, err, signum, out)
    kept = committed(out)
    assert 1 <= len(kept) < len(SHARDS) and "not started: shards" in err
    again = finish(start_command(resume_command(err)), timeout=600)
    assert again[0] == 0, again[2]
    assert_exactly_once(out)
    assert_same_results(out, ray_reference)
