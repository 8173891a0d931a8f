"""The run's progress: images × model states reported per state, rate and ETA from the work of all
workers together, retries taken back, plain lines without a terminal, other output above the bar."""

from __future__ import annotations

import io
import re
import sys
import time

import pytest

from benchmark.config import validate_job
from benchmark.engine.driver import prepare_run
from benchmark.engine.inline import execute_inline
from benchmark.engine.progress import Progress, StateWork, Throughput
from benchmark.engine.shard import ShardRunner

from .jobs import TINY


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def quiet(total_images: int, states: int, shards: int = 2, clock=None) -> Progress:
    return Progress(total_images, shards, enabled=False, states=states, clock=clock or time.monotonic)


def test_state_work_splits_one_image_by_cost() -> None:
    work = StateWork.of(states=18, trained_cost=220.0, randomized_cost=36.0)
    assert work.trained + 17 * work.each == pytest.approx(1.0)
    assert work.trained / work.each == pytest.approx(220 / 36)
    assert StateWork.of(1, 5.0, 0.0) == StateWork(1, 1.0, 0.0)


def test_throughput_leaves_out_start_up_and_follows_the_recent_rate() -> None:
    rate = Throughput(min_window=10.0, fraction=0.5)
    assert rate.rate() is None
    rate.add(5.0, now=100.0)  # the first report: its work was done before it, during start-up
    assert rate.rate() is None
    for t in range(1, 21):
        rate.add(1.0, now=100.0 + t)  # then 1 image per second
    assert rate.rate() == pytest.approx(1.0)
    for t in range(21, 61):
        rate.add(0.5, now=100.0 + t)  # half the actors finished: 0.5 per second
    assert rate.rate() == pytest.approx(0.5, rel=0.02)  # window = 30 s, all of it at the new rate


def test_reports_count_images_times_states_and_the_eta_uses_the_combined_rate() -> None:
    clock = Clock()
    progress = quiet(total_images=16, states=3, clock=clock)  # 2 shards of 2 batches of 4 images
    clock.now = 100.0
    progress.work_started()  # the first actor is ready: the rate counts from here
    work = StateWork.of(3, 2.0, 1.0)  # the trained state is worth half an image, the others a quarter
    for second, first in ((110, True), (120, False), (130, False)):  # two workers in parallel, 10 s a state
        clock.now = float(second)
        for shard in (0, 1):
            progress.report(shard, 1, 4, 4 * work.share(first))
    assert (progress.units, progress.images) == (2 * 3 * 4, pytest.approx(8.0))
    # both workers together, from the first one ready: 8 images in 30 s
    assert progress.rate() == pytest.approx(8 / 30)
    assert progress.eta() == pytest.approx((16 - 8) / (8 / 30))
    line = progress.line()
    assert "50.0% | 24/48 image-states | 8.0/16 images | 3.75 s/img | ETA 00:30" in line


def test_no_rate_before_some_work_and_start_up_left_out() -> None:
    clock = Clock()
    progress = quiet(total_images=10, states=2, clock=clock)
    clock.now = 50.0  # Ray and the models took 50 s
    progress.work_started()
    clock.now = 52.0
    progress.report(0, 1, 1, 0.5)
    assert progress.rate() is None and "? img/s | ETA ?" in progress.line()  # 2 s say nothing yet
    clock.now = 70.0
    progress.report(1, 1, 1, 0.5)
    assert progress.rate() == pytest.approx(1.0 / 20)  # from the ready actor, not from the start


def test_shard_end_settles_its_count_and_late_or_stale_reports_are_ignored() -> None:
    progress = quiet(total_images=5, states=4, shards=2)
    progress.report(0, 1, 2, 0.5)
    progress.shard_done({"shard": 0, "images": 2, "errors": 1})  # 3 images, one of them unreadable
    assert (progress.units, progress.images, progress.done) == (12, pytest.approx(3.0), 1)
    progress.report(0, 1, 2, 0.5)  # arrived after the shard's end: already counted
    assert progress.units == 12
    progress.report(1, 1, 2, 0.4)
    progress.report(1, 1, 2, 0.2)
    progress.shard_retry(1)  # the try failed: its reports are taken back
    assert (progress.units, progress.images) == (12, pytest.approx(3.0))
    progress.report(1, 1, 2, 0.4)  # a late report of the failed try
    assert progress.units == 12
    progress.report(1, 2, 2, 0.4)
    progress.shard_failed(1, 2)  # given up: its work counts as done
    assert (progress.units, progress.images, progress.failures) == (20, pytest.approx(5.0), 1)


def test_without_a_terminal_a_plain_line_every_few_seconds_and_at_the_end() -> None:
    stream = io.StringIO()
    progress = Progress(4, 2, enabled=True, states=3, every=1.0, stream=stream, interactive=False)
    progress.report(0, 1, 2, 1.0)
    time.sleep(2.6)
    progress.shard_done({"shard": 0, "images": 2})
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 3 and all(line.startswith("progress ") for line in lines)
    assert "2/12 image-states" in lines[0] and "1.0/4 images" in lines[0] and "shards 0/2, 0 failed" in lines[0]
    assert "\r" not in stream.getvalue() and "50.0% | 6/12 image-states | 2.0/4 images" in lines[-1]


def test_lines_written_during_the_run_go_above_the_bar() -> None:
    stream = io.StringIO()
    progress = Progress(4, 2, enabled=True, states=3, stream=stream, interactive=True)
    with progress.capturing():
        print("2026-01-01 INFO worker.py:1 -- Started a local Ray instance.", file=sys.stderr)
        sys.stdout.write("(ShardActor pid=42) a warning\n")
        progress.report(0, 1, 3, 1.0)
    progress.close()
    segments = re.split(r"[\r\n]", stream.getvalue())
    assert "2026-01-01 INFO worker.py:1 -- Started a local Ray instance." in segments  # a line of its own
    assert "(ShardActor pid=42) a warning" in segments
    assert sys.stderr is not None and not type(sys.stderr).__name__ == "_AboveBar"


def test_each_batch_reports_every_model_state_in_order(tmp_path) -> None:
    """Inline, through the real ShardRunner: per batch, the trained state in two parts (explained,
    then its occlusion curves: most of its time), then one report per randomized state; a batch's
    units add up to images x states and its work to its images."""
    job = {**TINY, "dataset": {**TINY["dataset"], "synthetic_images": 3, "shard_size": 3},
           "runtime": {**TINY["runtime"], "batch_size": 2}}
    state = prepare_run(validate_job(job), str(tmp_path / "out"))
    calls = []

    class Recording(Progress):
        def report(self, shard, attempt, units, images):
            calls.append((shard, attempt, units, images))
            super().report(shard, attempt, units, images)

    states = 1 + 2 * 2  # trained + 2 seeds x 2 stages
    progress = Recording(3, 1, enabled=False, states=states)
    outcome = execute_inline(state, progress)
    assert outcome.ok and progress.units == pytest.approx(3 * states) and progress.images == pytest.approx(3.0)
    assert len(calls) == 2 * (states + 1) and {c[:2] for c in calls} == {(0, 1)}
    runner = ShardRunner(validate_job(job), str(tmp_path / "out"))
    explained, (trained, randomized) = runner.evaluator.explained, runner.evaluator.costs
    for batch, images in ((calls[: states + 1], 2), (calls[states + 1 :], 1)):
        units = [c[2] for c in batch]
        assert units[:2] == pytest.approx([images * explained, images * (1 - explained)])  # the trained state
        assert units[2:] == pytest.approx([images] * (states - 1))
        work = [c[3] for c in batch]
        assert sum(work) == pytest.approx(images)
        assert work[0] + work[1] == pytest.approx(images * trained / (trained + (states - 1) * randomized))
        assert 0 < explained < 0.5  # the occlusion curves are most of the trained state's work


def test_a_runner_without_progress_reports_nothing(tmp_path) -> None:
    spec = validate_job(TINY)
    runner = ShardRunner(spec, str(tmp_path / "out"))
    assert runner.progress is None and runner._reporter(None, 1, 2) is None
