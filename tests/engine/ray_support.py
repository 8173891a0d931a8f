"""Helpers of the Ray engine tests: a job small enough for many runs, runners that misbehave on
cue (they run inside Ray actors, so they live in an importable module), table comparison."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from benchmark.config import validate_job
from benchmark.engine.driver import RunOutcome, RunState, finish_run, prepare_run
from benchmark.engine.progress import Progress
from benchmark.engine.shard import ShardRunner
from benchmark.results import OutputStore, committed_shards, read_table

from .jobs import TINY, sorted_rows

# Six one-image shards, a few tenths of a second each. Actors ask for one (fake) GPU: on the test
# cluster Ray hands them out, torch finds no CUDA and the 'auto' device falls back to CPU.
RAY_JOB: dict[str, Any] = {
    **TINY,
    "name": "ray-tiny",
    "dataset": {**TINY["dataset"], "synthetic_images": 6, "shard_size": 1},
    "randomization": {"seeds": [0], "max_boundaries": 1},
    "methods": [{"name": "gradient"}, {"name": "noise"}],
    "metrics": {"normalizations": ["second_moment"], "similarities": ["ssim", "mse"], "absolute": [False, True]},
    "occlusion": {"kernels": [16], "steps": 2},
    "runtime": {"device": "auto", "batch_size": 1, "num_gpus": 1, "num_cpus": 1, "chunk_size": 8, "channels_last": True,
                "fold_batchnorm": False},
}
SHARDS = list(range(6))
SCIENCE_TABLES = ("randomization", "occlusion")


def comparable(out: Path | str) -> dict[str, pd.DataFrame]:
    """The science tables, sorted, list cells as tuples: equal frames mean equal results."""
    frames = {}
    for table in SCIENCE_TABLES:
        frame = sorted_rows(out, table)
        for column in frame.columns:
            if frame[column].map(lambda v: hasattr(v, "__len__") and not isinstance(v, str)).any():
                frame[column] = frame[column].map(tuple)
        frames[table] = frame
    return frames


def assert_same_results(out: Path | str, reference: dict[str, pd.DataFrame]) -> None:
    got = comparable(out)
    for table, expected in reference.items():
        assert len(got[table]) == len(expected) > 0, table
        pd.testing.assert_frame_equal(got[table], expected, check_exact=True, obj=table)


def assert_exactly_once(out: Path | str, shards: list[int] = SHARDS) -> pd.DataFrame:
    """Every shard committed, one `shards` row each, no duplicated result row; returns `shards`."""
    store = OutputStore(str(out))
    assert sorted(committed_shards(store)) == shards
    rows = read_table(store, "shards").to_pandas()
    assert sorted(rows.shard.tolist()) == shards
    randomization = read_table(store, "randomization").to_pandas()
    keys = ["image_id", "method", "seed", "stage", "metric", "normalization", "absolute"]
    assert not randomization.duplicated(keys).any()
    assert randomization.image_id.nunique() == int(rows.images.sum())
    return rows


def run_executor(job: dict, out: Path | str, progress: Progress | None = None,
                 **executor_options: Any) -> tuple[RunState, RunOutcome]:
    """prepare → Ray executor → finish, as `benchmark run` does, with a runner of our choice."""
    from benchmark.engine.ray_executor import make_ray_executor

    state = prepare_run(validate_job(job), str(out))
    progress = progress or Progress(sum(len(t) for t in state.pending), len(state.tasks), enabled=False)
    started = time.perf_counter()
    outcome = make_ray_executor(**executor_options)(state, progress)
    finish_run(state, outcome, time.perf_counter() - started)
    return state, outcome


class Background(threading.Thread):
    """Runs a function in a thread and hands back its result or its exception."""

    def __init__(self, function: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.function, self.result, self.error = function, None, None
        self.start()

    def run(self) -> None:
        try:
            self.result = self.function()
        except BaseException as error:  # re-raised in value()
            self.error = error

    def value(self, timeout: float = 300) -> Any:
        self.join(timeout)
        assert not self.is_alive(), "the run did not finish"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for_file(path: Path, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)
    time.sleep(0.05)  # written in one go; let the writer close it
    return json.loads(path.read_text())


# -- object store (moto server) ----------------------------------------------------------------
class CountingMotoServer:
    """moto's threaded server on 127.0.0.1 (any free port) with a log of the requests it served:
    (method, path, query), to count what one write costs."""

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        self.requests: list[tuple[str, str, str]] = []
        app = DomainDispatcherApplication(create_backend_app)

        def logged(environ, start_response):
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], environ.get("QUERY_STRING", "")))
            return app(environ, start_response)

        self._server = make_server("127.0.0.1", 0, logged, threaded=True, request_handler=MotoRequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()

    def get_host_and_port(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), port

    def requests_for(self, path: str) -> list[tuple[str, str]]:
        """(method, query) of the requests on one object path (``/bucket/key``)."""
        return [(method, query) for method, where, query in self.requests if where == path]


def new_bucket(endpoint: str, name: str) -> str:
    import boto3

    boto3.client("s3", endpoint_url=f"http://{endpoint}").create_bucket(Bucket=name)
    return name


def bucket_keys(endpoint: str, bucket: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


# -- runners that misbehave on cue (built inside the actors) ----------------------------------
class HoldingRunner(ShardRunner):
    """The first try of shard ``hold`` says where it runs (``flag`` file), then waits to be killed."""

    def __init__(self, *args: Any, flag: str, hold: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.flag, self.hold = Path(flag), hold

    def run(self, task, attempt: int = 1) -> dict:
        if task.shard == self.hold and attempt == 1:
            import ray

            context = ray.get_runtime_context()
            self.flag.write_text(json.dumps(
                {"actor": context.get_actor_name(), "node": context.get_node_id(), "pid": os.getpid()}
            ))
            time.sleep(300)
            raise RuntimeError("was not killed")
        return super().run(task, attempt)


class PausingRunner(ShardRunner):
    """Pauses after each model state it reports, so that the driver's poll certainly sees a shard's
    states before the shard ends (a real shard's states take far longer than a poll)."""

    def __init__(self, *args: Any, pause: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        sink = self.progress

        class Pausing:
            def report(self, *report: Any) -> None:
                sink.report(*report)
                time.sleep(pause)

        self.progress = Pausing()


class FailingRunner(ShardRunner):
    """Shard ``bad`` fails every time, like a shard that trips a bug."""

    def __init__(self, *args: Any, bad: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.bad = bad

    def run(self, task, attempt: int = 1) -> dict:
        if task.shard == self.bad:
            raise RuntimeError("device fell over")
        return super().run(task, attempt)


class ThreadReportingRunner(ShardRunner):
    """A shard's summary also says how many torch threads its evaluation ran with, and its chunk and layout."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        import torch

        evaluate = self.evaluator.evaluate
        self.seen: set[int] = set()

        def recording(*a: Any, **k: Any):
            self.seen.add(torch.get_num_threads())
            return evaluate(*a, **k)

        self.evaluator.evaluate = recording

    def run(self, task, attempt: int = 1) -> dict:
        self.seen.clear()
        weight = next(p for p in self.model.module.parameters() if p.dim() == 4)
        layout = {"chunk_size": self.evaluator.chunk_size, "channels_last": not weight.is_contiguous()}
        return {**super().run(task, attempt), "threads_seen": sorted(self.seen), "execution_seen": layout}
