"""Issue 16 item 1: one writer per output. Nothing stopped two drivers from writing the same
``--out``: with the same spec every shard ran twice, with different specs shard files silently
held the other spec's rows. Now a driver takes the output's lease before any work, a second one
is refused with a message naming the holder, a stale lease is taken over, and the lease is
released on every way out. Tested with the lease objects and with two real driver processes,
on a local folder and on an S3-compatible server (moto) on 127.0.0.1."""

from __future__ import annotations

import json
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import pytest

from benchmark.engine.lease import LEASE, LeaseHeld, LeaseInfo, OutputLease, read_lease
from benchmark.results import OutputStore

from .drivers import QUICK, committed, finish, globbed_shards, start, wait_until
from .jobs import write_job
from .ray_support import assert_exactly_once, new_bucket


@pytest.fixture(params=["local", "s3"])
def out(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "out")
    endpoint = request.getfixturevalue("s3_endpoint")
    bucket = new_bucket(endpoint, "lease-" + re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:40].strip("-"))
    return f"s3://{bucket}/out?endpoint_override={endpoint}&scheme=http"


def take(out: str, **options) -> OutputLease:
    return OutputLease.acquire(OutputStore(out), name=options.pop("name", "a"), spec_hash="0" * 16, **options)


def test_a_second_holder_is_refused_naming_the_first(out) -> None:
    first = take(out, name="first-job", run_id="run-1", command="benchmark run first.yaml")
    try:
        with pytest.raises(LeaseHeld) as refused:
            take(out, name="second-job")
        message = str(refused.value)
        for part in ("is being written by another driver", "run 'first-job' (run-1)", f"pid {first.info.pid}",
                     platform.node(), "benchmark run first.yaml", "choose another --out"):
            assert part in message, message
        assert read_lease(OutputStore(out)).token == first.info.token
    finally:
        first.release()
    assert read_lease(OutputStore(out)) is None  # released: the file is gone
    take(out).release()  # and free for the next


def test_only_one_of_many_simultaneous_takers_wins(out) -> None:
    results: list = []
    barrier = threading.Barrier(6)

    def contend() -> None:
        barrier.wait()
        try:
            results.append(take(out))
        except LeaseHeld as error:
            results.append(error)

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [r for r in results if isinstance(r, OutputLease)]
    assert len(winners) == 1 and len(results) == 6
    assert read_lease(OutputStore(out)).token == winners[0].info.token
    winners[0].release()


def plant(out: str, **changes) -> None:
    """A lease file as another driver wrote it."""
    now = time.time()
    info = LeaseInfo(token="f" * 32, out=out, name="old", spec_hash="1" * 16, run_id="old-run", host="elsewhere",
                     pid=4242, pid_started=None, command="benchmark run old.yaml", acquired_at=now - 600,
                     heartbeat_at=now, expires_after=60.0)
    OutputStore(out).write_json(LEASE, {**asdict(info), **changes})


def test_a_live_lease_of_another_host_is_respected_until_it_expires(out) -> None:
    plant(out, heartbeat_at=time.time() - 30)  # 30 s of 60: alive
    with pytest.raises(LeaseHeld, match="pid 4242 on elsewhere"):
        take(out)
    plant(out, heartbeat_at=time.time() - 61)  # silent for longer than its expiry: stale
    lease = take(out)
    assert lease.took_over.name == "old" and "no heartbeat for 61 s" in lease.stale_reason
    assert read_lease(OutputStore(out)).token == lease.info.token
    lease.release()


def test_a_dead_holder_on_this_host_is_taken_over_at_once(out) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    plant(out, host=platform.node(), pid=int(gone.stdout), heartbeat_at=time.time())  # fresh heartbeat, dead process
    lease = take(out)
    assert f"its process {int(gone.stdout)} on this host is gone" == lease.stale_reason
    lease.release()


def test_the_heartbeat_renews_and_a_lost_lease_is_noticed(out) -> None:
    lost: list[str] = []
    lease = take(out, expiry=0.6, on_lost=lost.append)  # a heartbeat every 0.5 s
    try:
        first = read_lease(OutputStore(out)).heartbeat_at
        wait_until(lambda: read_lease(OutputStore(out)).heartbeat_at > first, timeout=30, what="a heartbeat")
        plant(out, name="thief", heartbeat_at=time.time())  # someone took it (we were thought dead)
        wait_until(lambda: lost, timeout=30, what="the holder to notice")
        assert "taken over" in lost[0] and "run 'thief'" in lost[0]
    finally:
        lease.release()
    assert read_lease(OutputStore(out)).name == "thief"  # a lost lease is not released by its old holder


# -- two real drivers --------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_drivers_on_one_output(out, tmp_path, capsys) -> None:
    """Driver A runs; driver B, same spec or another, is refused naming A and writes nothing; A
    ends (stopped by SIGTERM: it releases the lease) and the same command resumes exactly once.
    A is paused (SIGSTOP) while B tries, so that it cannot finish first on a fast machine; a
    paused holder's lease stays valid (its process exists; its heartbeat is younger than 120 s)."""
    shards = QUICK["dataset"]["synthetic_images"]
    job = write_job(tmp_path, QUICK)
    other = write_job(tmp_path, {**QUICK, "randomization": {"seeds": [1], "max_boundaries": 1}}, "other.yaml")
    first = start(job, out, "--executor", "inline")
    try:
        wait_until(lambda: committed(out), first, what="driver A's first commit")
        first.send_signal(signal.SIGSTOP)
        for job_b in (job, other):
            code, _, err = finish(start(job_b, out, "--executor", "inline"), timeout=300)
            assert code == 2, err
            assert "is being written by another driver" in err and f"pid {first.pid}" in err, err
            assert "run 'quick'" in err and "Traceback" not in err
        first.send_signal(signal.SIGCONT)
        assert first.poll() is None  # A was not disturbed
        first.send_signal(signal.SIGTERM)
        code, _, err = finish(first)
        assert code == 143, err
    finally:
        if first.poll() is None:
            first.kill()
    assert read_lease(OutputStore(out)) is None
    done = committed(out)
    assert globbed_shards(out) == done  # B wrote nothing; A's stop left no uncommitted parts
    if "://" in out:
        return  # resuming on S3: test_object_store.py::test_a_resume_on_s3_cleans_up_end_to_end
    code, _, err = finish(start(job, out, "--executor", "inline"))
    assert code == 0, err
    assert f"{len(done)} already committed, {shards - len(done)} to run" in err
    assert_exactly_once(out, list(range(shards)))
    assert committed(out) == globbed_shards(out) == list(range(shards))


def test_the_lease_is_released_when_the_run_fails(tmp_path, capsys) -> None:
    from benchmark.cli.main import main

    out = tmp_path / "out"
    job = write_job(tmp_path, QUICK)
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress",
                 "--set", "model.weights=/no/such/file.pt"]) == 2
    assert not (out / LEASE).exists() and not out.exists()  # refused before writing: not even the folder
    assert main(["run", str(job), "--executor", "inline", "--out", str(out), "--no-progress",
                 "--set", "dataset.synthetic_images=2"]) == 0
    assert not (out / LEASE).exists() and json.loads((out / "manifest.json").read_text())["name"] == "quick"


def test_status_names_the_writer(tmp_path, capsys) -> None:
    from benchmark.cli.main import main

    from ..results.fakes import fake_output

    out = str(fake_output(tmp_path / "out"))
    with take(out, name="busy-job"):
        main(["status", out])
        assert "writer    run 'busy-job'" in capsys.readouterr().out
    main(["status", out])
    assert "writer    none (no driver holds the output's lease)" in capsys.readouterr().out


# -- fencing: the workers of a driver that lost its lease write nothing -------------------------------
def test_a_writer_of_a_lost_lease_writes_nothing(out) -> None:
    """Item 1's hole: a driver whose lease was taken over stopped dispatching, but shards already
    running on its workers still committed into an output that now belongs to another run."""
    from benchmark.engine.lease import LeaseFence, LeaseLost
    from benchmark.engine.shard import shard_failure_rows
    from benchmark.results import ShardWriter, committed_shards, part_path

    lease = take(out, name="old-holder")
    store = OutputStore(out)
    partition = {"model": "m", "dataset": "d"}
    writer = ShardWriter(store, partition, fence=LeaseFence(out, lease.info.token))
    writer.commit(0, {"errors": shard_failure_rows(0, 1, "a row")}, {})  # held: written
    try:
        plant(out, name="thief", heartbeat_at=time.time())  # taken over while shard 1 ran
        with pytest.raises(LeaseLost, match=r"no longer holds the output's lease \(now held by run 'thief'"):
            writer.commit(1, {"errors": shard_failure_rows(1, 1, "a row")}, {})
        with pytest.raises(LeaseLost):
            writer.record_failure(2, shard_failure_rows(2, 1, "failed"), {})
        assert sorted(committed_shards(store)) == [0]
        assert store.exists(part_path("errors", partition, 0))
        for shard in (1, 2):
            assert not store.exists(part_path("errors", partition, shard))
    finally:
        lease.release()
    assert read_lease(store).name == "thief"


def test_an_inline_run_that_lost_its_output_commits_no_shard_and_cleans_nothing(tmp_path) -> None:
    """The driver side: every shard is refused at its start, no failure marker is written, and the
    end of the run neither removes the new holder's files nor rewrites the manifest."""
    from benchmark.config import validate_job
    from benchmark.engine.driver import finish_run, prepare_run
    from benchmark.engine.inline import execute_inline
    from benchmark.engine.progress import Progress
    from benchmark.engine.shard import partition_of
    from benchmark.results import committed_shards, failed_shards, part_path

    out = str(tmp_path / "out")
    lease = take(out, name="quick")
    try:
        state = prepare_run(validate_job({**QUICK, "dataset": {**QUICK["dataset"], "synthetic_images": 2}}), out)
        state.lease_token = lease.info.token
        plant(out, name="thief", heartbeat_at=time.time())
        # the new holder's shard 9, written but not yet committed: a leftover for cleanup, were the output ours
        theirs = tmp_path / "out" / part_path("randomization", partition_of(state.spec), 9)
        theirs.parent.mkdir(parents=True, exist_ok=True)
        theirs.write_bytes(b"in flight")
        outcome = execute_inline(state, Progress(2, len(state.tasks), enabled=False))
        assert sorted(outcome.failed) == [task.shard for task in state.tasks] and not outcome.completed
        assert all("no longer holds the output's lease" in reason for reason in outcome.failed.values())
        manifest_before = OutputStore(out).read_json("manifest.json")
        assert finish_run(state, outcome, 1.0) == state.manifest
        assert OutputStore(out).read_json("manifest.json") == manifest_before
        assert committed_shards(OutputStore(out)) == {} and failed_shards(OutputStore(out)) == {}
        assert theirs.read_bytes() == b"in flight"
    finally:
        lease.release()
