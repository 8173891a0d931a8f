"""`benchmark run` as its own process, the way a user, a scheduler or a second user starts it:
for the tests of the output lease and of signals (real processes, real signals)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.dataset as pads

from benchmark.results import OutputStore, committed_shards

from .jobs import TINY

ROOT = Path(__file__).resolve().parents[2]

# One method, one seed, one of each metric setting: a shard of one 32 px image takes about a second.
QUICK: dict[str, Any] = {
    **TINY,
    "name": "quick",
    "dataset": {**TINY["dataset"], "synthetic_images": 8, "shard_size": 1},
    "randomization": {"seeds": [0], "max_boundaries": 1},
    "methods": [{"name": "gradient"}],
    "metrics": {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False]},
    "occlusion": {"kernels": [8], "steps": 2},
}


def environment(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def start(job: Path, out: str, *arguments: str, **popen: Any) -> subprocess.Popen:
    """A `benchmark run` driver in a session of its own (its embedded Ray goes with it)."""
    command = [sys.executable, "-m", "benchmark", "run", str(job), "--out", out, "--no-progress", *arguments]
    return subprocess.Popen(command, cwd=ROOT, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True, **popen)


def finish(driver: subprocess.Popen, timeout: float = 600) -> tuple[int, str, str]:
    out, err = driver.communicate(timeout=timeout)
    return driver.returncode, out, err


def wait_until(condition, driver: subprocess.Popen | None = None, timeout: float = 300, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if driver is not None and driver.poll() is not None:
            raise AssertionError(f"the driver ended (rc {driver.returncode}) before {what}: {driver.stderr.read()}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def committed(out: str) -> list[int]:
    return sorted(committed_shards(OutputStore(out)))


def globbed_shards(out: str, table: str = "shards") -> list[int]:
    """Shard ids a plain pyarrow dataset over the table's folder sees (no markers consulted)."""
    store = OutputStore(out)
    if not store.exists(table):
        return []
    dataset = pads.dataset(store.path(table), filesystem=store.fs, format="parquet", partitioning="hive",
                           exclude_invalid_files=False)
    return sorted(dataset.to_table(columns=["shard"]).column("shard").to_pylist())


def resume_command(stderr: str) -> list[str]:
    """The command the stopped driver printed after 'resume with:'."""
    match = re.search(r"resume with:\n\s+(.+)", stderr)
    assert match, stderr
    words = shlex.split(match.group(1))
    assert words[:2] == ["benchmark", "run"], words
    return [sys.executable, "-m", "benchmark", *words[1:]]
