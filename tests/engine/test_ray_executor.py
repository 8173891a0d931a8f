"""The Ray executor on a real multi-node Ray (``ray.cluster_utils.Cluster``, fake GPUs): equal to
the inline executor, a killed actor, a lost node, a failing shard, an ``s3://`` output."""

from __future__ import annotations

from collections import deque

import functools
import json

import pytest

from benchmark.cli.main import main
from benchmark.engine.ray_executor import RayExecution, Slot
from benchmark.results import OutputStore, committed_shards, read_table

from .jobs import write_job
from .ray_support import (
    RAY_JOB, SHARDS, Background, FailingRunner, HoldingRunner, PausingRunner, assert_exactly_once, assert_same_results,
    bucket_keys, new_bucket, run_executor, wait_for_file,
)

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def cluster(aws_credentials):
    """A head that takes no work and two worker nodes with one CPU and one fake GPU each."""
    from ray.cluster_utils import Cluster

    if ray.is_initialized():
        ray.shutdown()
    cluster = Cluster(
        initialize_head=True,
        connect=True,
        head_node_args={
            "num_cpus": 0,
            "include_dashboard": False,
            # notice a removed node within seconds
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    for _ in range(2):
        cluster.add_node(num_cpus=1, num_gpus=1)
    cluster.wait_for_nodes()
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def last_attempt(out) -> dict:
    return OutputStore(str(out)).read_json("manifest.json")["last_attempt"]


def test_ray_run_equals_the_inline_run(cluster, ray_reference, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    # no --executor: ray is the default
    assert main(["run", str(write_job(tmp_path, RAY_JOB)), "--out", str(out), "--address", cluster.address,
                 "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "ray: 2 actor(s), 1 GPU + 1 CPU each, 2 shard(s) in flight per actor" in captured.err
    assert "scheduling overhead" in captured.out
    rows = assert_exactly_once(out)
    assert set(rows.device) == {"cpu"} and set(rows.attempt) == {1}  # a Ray GPU without CUDA: torch on CPU
    assert_same_results(out, ray_reference)

    details = last_attempt(out)
    assert details["executor"] == "ray" and details["actors"] == 2 and details["worker_losses"] == 0
    assert details["actor_devices"] == ["cpu"]
    scheduling = details["scheduling"]
    assert scheduling["shards"] == len(SHARDS)
    assert 0 <= scheduling["overhead_median_s"] <= scheduling["overhead_max_s"] < scheduling["shard_seconds_mean"] * 10
    assert main(["status", str(out)]) == 0
    assert f"over {len(SHARDS)} shards; 2 actors" in capsys.readouterr().out


def test_progress_reaches_the_driver_within_each_shard(cluster, tmp_path, capfd) -> None:
    """Actors report every model state of every batch through the progress channel: the driver sees
    a shard's states before the shard ends, the counts add up to images x states, and the rate is
    the work of both actors together."""
    from benchmark.engine.progress import Progress

    events = []

    class Recording(Progress):
        def report(self, shard, attempt, units, images):
            events.append(("state", shard, units, images))
            super().report(shard, attempt, units, images)

        def shard_done(self, summary):
            events.append(("done", summary["shard"], summary["images"], None))
            super().shard_done(summary)

    job = {**RAY_JOB, "dataset": {**RAY_JOB["dataset"], "synthetic_images": 4, "shard_size": 2},
           "runtime": {**RAY_JOB["runtime"], "batch_size": 1}}
    states = 3  # the trained model, then 2 stages of 1 seed
    progress = Recording(4, 2, enabled=False, states=states)
    _, outcome = run_executor(job, tmp_path / "out", progress=progress,
                              runner_factory=functools.partial(PausingRunner, pause=1.5))
    assert outcome.ok and progress.units == pytest.approx(4 * states) and progress.images == pytest.approx(4.0)
    for shard in (0, 1):
        mine = [event for event in events if event[1] == shard]
        done = [i for i, event in enumerate(mine) if event[0] == "done"]
        assert len(done) == 1 and done[0] > 0, mine  # states arrived before the shard's end
        reported = [event for event in mine if event[0] == "state"]
        assert sum(event[2] for event in reported) == pytest.approx(2 * states)  # 2 batches of 1 image x 3 states
        assert sum(event[3] for event in reported) == pytest.approx(2.0)
    assert progress.rate() is not None and progress.rate() > 0
    # the actors find the channel by name: no actor handle among their constructor's arguments, so Ray
    # has nothing to warn about on the terminal (ray-project/ray#53727) and can restart them
    assert "constructor arguments in the object store" not in capfd.readouterr().err


def test_killed_actor_costs_the_shard_it_was_running(cluster, ray_reference, tmp_path) -> None:
    flag, out = tmp_path / "held.json", tmp_path / "out"
    holding = functools.partial(HoldingRunner, flag=str(flag), hold=2)
    run = Background(lambda: run_executor(RAY_JOB, out, runner_factory=holding))
    held = wait_for_file(flag)  # shard 2 is running on this actor right now
    assert 2 not in committed_shards(OutputStore(str(out)))
    ray.kill(ray.get_actor(held["actor"]), no_restart=False)  # Ray restarts it

    _, outcome = run.value()
    assert outcome.ok and outcome.details["worker_losses"] == 1
    rows = assert_exactly_once(out).set_index("shard")
    assert rows.attempt[2] == 2 and (rows.attempt.drop(2) == 1).all()  # shards queued behind it cost nothing
    assert_same_results(out, ray_reference)


def test_lost_node_costs_the_shard_it_was_running(cluster, ray_reference, tmp_path) -> None:
    cluster.add_node(num_cpus=1, num_gpus=1)  # three fake-GPU nodes; one of them goes away
    cluster.wait_for_nodes()
    flag, out = tmp_path / "held.json", tmp_path / "out"
    holding = functools.partial(HoldingRunner, flag=str(flag), hold=3)
    run = Background(lambda: run_executor(RAY_JOB, out, runner_factory=holding))
    held = wait_for_file(flag)
    node = next(node for node in cluster.worker_nodes if node.node_id == held["node"])
    cluster.remove_node(node)

    _, outcome = run.value()
    assert outcome.ok and outcome.details["actors"] == 3 and outcome.details["worker_losses"] == 1
    rows = assert_exactly_once(out).set_index("shard")
    assert rows.attempt[3] == 2
    assert_same_results(out, ray_reference)
    assert sum(node["Alive"] and node["Resources"].get("GPU", 0) > 0 for node in ray.nodes()) == 2


def test_failing_shard_is_retried_recorded_and_the_run_exits_non_zero(
    cluster, ray_reference, tmp_path, monkeypatch, capsys
) -> None:
    from benchmark.engine import ray_executor

    original = ray_executor.make_ray_executor
    failing = functools.partial(FailingRunner, bad=4)
    monkeypatch.setattr(ray_executor, "make_ray_executor",
                        lambda address=None: original(address, runner_factory=failing))
    job, out = write_job(tmp_path, RAY_JOB), tmp_path / "out"
    command = ["run", str(job), "--out", str(out), "--address", cluster.address, "--no-progress"]
    assert main(command) == 1
    err = capsys.readouterr().err
    assert [f"shard 4 attempt {n}/3 failed: RuntimeError: device fell over" in err for n in (1, 2, 3)] == [True] * 3
    assert "error: 1 shard(s) failed: shard 4: RuntimeError: device fell over" in err
    store = OutputStore(str(out))
    assert sorted(committed_shards(store)) == [s for s in SHARDS if s != 4]  # the others finished
    errors = read_table(store, "errors").to_pandas()
    assert errors[["where", "shard", "attempt"]].values.tolist() == [["shard", 4, 3]]
    assert "RuntimeError: device fell over" in errors.reason[0]
    assert main(["status", str(out), "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["failed"] == [4]

    monkeypatch.setattr(ray_executor, "make_ray_executor", original)  # the cause is fixed: the same command again
    assert main(command) == 0
    assert "5 already committed, 1 to run" in capsys.readouterr().err
    assert_exactly_once(out)
    assert read_table(store, "errors").num_rows == 0
    assert_same_results(out, ray_reference)


def test_s3_output_end_to_end_and_resume_trusts_markers(cluster, s3_endpoint, ray_reference, tmp_path, capsys) -> None:
    bucket = new_bucket(s3_endpoint, "bench-e2e")
    out = f"s3://{bucket}/runs/tiny?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    command = ["run", str(write_job(tmp_path, RAY_JOB)), "--out", out, "--address", cluster.address, "--no-progress"]
    assert main(command) == 0
    keys = bucket_keys(s3_endpoint, bucket)
    part = "runs/tiny/{}/model=resnet34/dataset=synthetic/part-{}.parquet"
    assert {f"runs/tiny/_commits/shard-{s}.json" for s in SHARDS} <= set(keys)
    assert {part.format(t, s) for t in ("randomization", "occlusion", "shards") for s in SHARDS} <= set(keys)
    assert "runs/tiny/manifest.json" in keys and not [k for k in keys if ".tmp" in k or k.endswith("/")]
    assert_exactly_once(out)
    assert_same_results(out, ray_reference)

    # shard 3's marker is lost (e.g. the worker died between its last part and the marker): its parts
    # are still there, but readers and the resume go by markers only
    import boto3

    boto3.client("s3", endpoint_url=f"http://{s3_endpoint}").delete_object(
        Bucket=bucket, Key="runs/tiny/_commits/shard-3.json")
    store = OutputStore(out)
    assert part.format("randomization", 3) in bucket_keys(s3_endpoint, bucket)
    assert sorted(read_table(store, "shards").to_pandas().shard) == [0, 1, 2, 4, 5]
    capsys.readouterr()
    assert main(command) == 0
    assert "5 already committed, 1 to run" in capsys.readouterr().err
    assert_exactly_once(out)
    assert_same_results(out, ray_reference)
    assert main(["status", out, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["done"] == SHARDS and report["out"] == out


def test_actors_that_cannot_start_end_the_run_with_their_reason(cluster, tmp_path, capsys) -> None:
    cuda = {**RAY_JOB, "runtime": {**RAY_JOB["runtime"], "device": "cuda"}}  # the fake GPUs have no CUDA
    command = ["run", str(write_job(tmp_path, cuda)), "--out", str(tmp_path / "out"), "--address", cluster.address,
               "--no-progress"]
    assert main(command) == 2
    message = capsys.readouterr().err
    assert "error: no actor is left to run the remaining shards" in message
    assert "RuntimeError: runtime.device is 'cuda' but no CUDA device is visible" in message
    assert committed_shards(OutputStore(str(tmp_path / "out"))) == {}


class _FakeActor:
    """Stands in for an actor handle: remembers the shards sent to it."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.run = self

    def remote(self, task, attempt):
        self.sent.append(task)
        return object()


class _NoAttempts:
    def begin(self, task) -> int:
        return 1


def _execution(shards: int, actors: int, depth: int = 2) -> RayExecution:
    """The driver's dispatch state without a Ray session: ``actors`` ready actors, ``shards`` queued."""
    execution = RayExecution.__new__(RayExecution)
    execution.depth, execution.flights, execution.attempts = depth, {}, _NoAttempts()
    execution.queue = deque(range(shards))
    execution.slots = [Slot(index, f"a{index}", _FakeActor(), healthy=True) for index in range(actors)]
    return execution


@pytest.mark.parametrize(("shards", "expected"), [
    (2, [[0], [1]]),  # as many shards as actors: one each, never both behind one actor
    (3, [[0], [1]]),  # the last shard waits on the driver for whichever actor frees up first
    (4, [[0, 2], [1]]),  # a second shard behind a busy actor only while one per actor is left
    (6, [[0, 2], [1, 3]]),  # a full queue: breadth first, then a second shard in flight per actor
])
def test_dispatch_is_breadth_first_with_a_tail_rule(shards, expected) -> None:
    execution = _execution(shards, actors=2)
    execution._dispatch()
    assert [slot.handle.sent for slot in execution.slots] == expected
    assert list(execution.queue) == list(range(sum(map(len, expected)), shards))
