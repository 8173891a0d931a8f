"""Attempts, retries, failures and timing of shards: the bookkeeping every executor shares.

Each shard gets ``runtime.max_attempts`` tries. A try that raises, or whose worker dies while
running it, uses one; after the last one the shard is recorded as failed (``record_failure``:
an ``errors`` row and a failure marker) and the run goes on with the other shards. A try that
never started (it was queued behind the shard its actor died on) does not count.

Timing: the executor reports, per completed shard, the round trip it observed (from the moment
the shard could start: sent, or its worker seen free, whichever is later) and the worker's own
time for the whole call (evaluation and writing). The difference is the scheduling overhead:
what the driver, Ray and the transport add to a shard.
"""

from __future__ import annotations

import statistics
from collections import Counter
from typing import Any

from .driver import RunOutcome, RunState, record_failure
from .plan import ShardTask
from .progress import Progress
from .status import format_scheduling  # noqa: F401  (kept importable from here)


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


class ShardAttempts:
    def __init__(self, state: RunState, progress: Progress) -> None:
        self.state = state
        self.progress = progress
        self.max_attempts = state.spec.runtime.max_attempts
        self.tries: Counter[int] = Counter()
        self.outcome = RunOutcome()
        self.overheads: list[float] = []
        self.worker_seconds: list[float] = []

    def begin(self, task: ShardTask) -> int:
        """Number of the try that starts now (1-based)."""
        self.tries[task.shard] += 1
        return self.tries[task.shard]

    def forgive(self, task: ShardTask) -> None:
        """The try did not start (its worker died before reaching it): it does not count."""
        self.tries[task.shard] -= 1

    def succeeded(self, task: ShardTask, summary: dict, round_trip: float, worker_seconds: float) -> None:
        overhead = max(0.0, round_trip - worker_seconds)
        summary["overhead"] = overhead
        self.overheads.append(overhead)
        self.worker_seconds.append(worker_seconds)
        self.outcome.completed.append(summary)
        self.progress.shard_done(summary)

    def failed(self, task: ShardTask, reason: str, detail: str = "") -> bool:
        """Note a failed try; True when the shard gets another one, False once it is recorded."""
        attempt = self.tries[task.shard]
        self.progress.note(f"shard {task.shard} attempt {attempt}/{self.max_attempts} failed: {reason}")
        if attempt < self.max_attempts:
            self.progress.shard_retry(task.shard)
            return True
        record_failure(self.state, task, attempt, f"{reason}\n{detail}".rstrip())
        self.outcome.failed[task.shard] = reason
        self.progress.shard_failed(task.shard, len(task))
        return False

    def scheduling(self) -> dict[str, Any]:
        """Scheduling overhead per shard over this attempt's completed shards (manifest ``last_attempt``)."""
        if not self.overheads:
            return {"shards": 0}
        ordered = sorted(self.overheads)
        busy = sum(self.worker_seconds)
        return {
            "shards": len(ordered),
            "overhead_mean_s": statistics.fmean(ordered),
            "overhead_median_s": statistics.median(ordered),
            "overhead_p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "overhead_max_s": ordered[-1],
            "shard_seconds_mean": busy / len(ordered),
            "overhead_ratio": sum(ordered) / busy if busy > 0 else 0.0,
        }
