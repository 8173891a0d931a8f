"""The inline executor: shard after shard in this process, no Ray (debugging, small machines).

It runs exactly the same ``ShardRunner.run`` as a Ray actor does, with the same attempt
bookkeeping (``ShardAttempts``); only the place of execution differs. A stop request
(``engine.signals``) lets the running shard finish within the grace period and starts no other.
"""

from __future__ import annotations

import time
import traceback

from . import signals
from .attempts import ShardAttempts, describe_error
from .driver import RunOutcome, RunState
from .progress import Progress
from .shard import ShardRunner


def execute_inline(state: RunState, progress: Progress) -> RunOutcome:
    attempts = ShardAttempts(state, progress)
    attempts.outcome.details["executor"] = "inline"
    if not state.pending:
        return attempts.outcome
    stop = signals.active()
    remaining = list(state.pending)
    running: int | None = None
    try:
        runner = ShardRunner(state.spec, state.out, progress=progress, lease_token=state.lease_token)
        progress.work_started()
        while remaining and not stop.requested:
            task = remaining.pop(0)
            running = task.shard
            attempt = attempts.begin(task)
            started = time.perf_counter()
            try:
                summary = runner.run(task, attempt)
            except Exception as error:  # one bad shard must not end the run
                if attempts.failed(task, describe_error(error), traceback.format_exc()):
                    remaining.insert(0, task)
                running = None
                continue
            running = None
            took = time.perf_counter() - started
            attempts.succeeded(task, summary, round_trip=took, worker_seconds=took)
    except signals.StopNow:
        pass  # the grace period is over: the running shard is abandoned (not committed; a resume runs it)
    if stop.requested:
        attempts.outcome.details["stopped"] = {
            "abandoned": [] if running is None else [running],
            "not_started": sorted(task.shard for task in remaining),
        }
    return attempts.outcome  # no scheduling overhead to report: the shard runs in this very process
