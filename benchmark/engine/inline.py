"""The inline executor: shard after shard in this process, no Ray (debugging, small machines).

It runs exactly the same ``ShardRunner.run`` as a Ray actor does, with the same bounded
retries; only the place of execution differs.
"""

from __future__ import annotations

import traceback

from .driver import RunOutcome, RunState, record_failure
from .progress import Progress
from .shard import ShardRunner


def execute_inline(state: RunState, progress: Progress) -> RunOutcome:
    outcome = RunOutcome()
    if not state.pending:
        return outcome
    runner = ShardRunner(state.spec, state.out)
    attempts = state.spec.runtime.max_attempts
    for task in state.pending:
        reason = ""
        for attempt in range(1, attempts + 1):
            try:
                summary = runner.run(task, attempt)
            except Exception as error:  # one bad shard must not end the run
                reason = f"{type(error).__name__}: {error}"
                progress.note(f"shard {task.shard} attempt {attempt}/{attempts} failed: {reason}")
                last_trace = traceback.format_exc()
                continue
            outcome.completed.append(summary)
            progress.shard_done(summary)
            break
        else:
            record_failure(state, task, attempts, f"{reason}\n{last_trace}")
            outcome.failed[task.shard] = reason
            progress.shard_failed(len(task))
    return outcome
