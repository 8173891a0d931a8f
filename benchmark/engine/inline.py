"""The inline executor: shard after shard in this process, no Ray (debugging, small machines).

It runs exactly the same ``ShardRunner.run`` as a Ray actor does, with the same attempt
bookkeeping (``ShardAttempts``); only the place of execution differs.
"""

from __future__ import annotations

import time
import traceback

from .attempts import ShardAttempts, describe_error
from .driver import RunOutcome, RunState
from .progress import Progress
from .shard import ShardRunner


def execute_inline(state: RunState, progress: Progress) -> RunOutcome:
    attempts = ShardAttempts(state, progress)
    attempts.outcome.details["executor"] = "inline"
    if not state.pending:
        return attempts.outcome
    runner = ShardRunner(state.spec, state.out, progress=progress)
    progress.work_started()
    for task in state.pending:
        while True:
            attempt = attempts.begin(task)
            started = time.perf_counter()
            try:
                summary = runner.run(task, attempt)
            except Exception as error:  # one bad shard must not end the run
                if attempts.failed(task, describe_error(error), traceback.format_exc()):
                    continue
                break
            took = time.perf_counter() - started
            attempts.succeeded(task, summary, round_trip=took, worker_seconds=took)
            break
    return attempts.outcome  # no scheduling overhead to report: the shard runs in this very process
