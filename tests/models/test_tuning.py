"""The search behind the 'auto' execution settings, with fake timings: deterministic, no wall clock."""

from __future__ import annotations

import itertools

import pytest

from benchmark.attribution.backward import tiles
from benchmark.config import validate_job
from benchmark.models.tuning import (
    ExecutionSettings, PassKind, Point, Tuner, fallback_settings, open_keys, with_settings,
)

FIXED = ExecutionSettings(chunk_size=8, channels_last=True, threads=1, reuse_bottom_forward=True, precision="fp32")
ALL = ("chunk_size", "channels_last", "threads", "reuse_bottom_forward", "precision", "fold_batchnorm")


class FakeTimer:
    """Seconds per input from a table; a fake clock advanced by what each measurement would cost."""

    def __init__(self, table, default: float = 1.0) -> None:
        self.table, self.default, self.now, self.points = table, default, 0.0, []

    def __call__(self, point: Point) -> float:
        self.points.append(point)
        value = self.table(point) if callable(self.table) else self.table.get(point, self.default)
        self.now += 2 * point.size * value
        return value

    def clock(self) -> float:
        return self.now


def tune(workload, timer, budget=1e9, keys=ALL, **options):
    return Tuner(workload, timer, fixed=FIXED, open_keys=keys, budget=budget, clock=timer.clock, **options).run()


PLAIN = PassKind("plain", True, per_image=10, images=64)  # call size = min(chunk, 64)


def by_layout(cl: dict[int, float], contiguous: dict[int, float]):
    return lambda p: (cl if p.channels_last else contiguous)[p.size]


def test_the_chunk_and_layout_with_the_lowest_predicted_time_win() -> None:
    timer = FakeTimer(by_layout({8: 1.0, 16: 0.8, 32: 0.7, 64: 0.75}, {8: 0.9, 16: 0.7, 32: 0.6, 64: 0.65}))
    result = tune([PLAIN], timer)
    assert (result.settings.chunk_size, result.settings.channels_last) == (32, False)
    assert result.predicted["32/contiguous"] == pytest.approx(10 * 0.6)
    assert result.predicted["64/channels_last"] == pytest.approx(10 * 0.75)


def test_the_ladder_stops_where_the_time_per_image_rises() -> None:
    timer = FakeTimer(by_layout({8: 1.0, 16: 1.2, 32: 0.1, 64: 0.1}, {8: 2.0, 16: 2.0, 32: 2.0, 64: 2.0}))
    result = tune([PLAIN], timer, keys=("chunk_size",))
    assert result.settings.chunk_size == 8  # 16 was slower: 32 and 64 are never tried
    assert sorted({p.size for p in timer.points}) == [8, 16]
    assert {p.channels_last for p in timer.points} == {True}  # the layout was given


def test_a_mix_of_kinds_is_weighed_by_passes_per_image_at_each_kinds_call_size() -> None:
    # rule passes of 4 images (call size 4 whatever the chunk) and a long forward stream
    rules = PassKind("lrp", True, per_image=5, images=4)
    stream = PassKind("forward", False, per_image=100, images=1, steps=400)
    table = {"lrp": {4: 2.0}, "forward": {8: 0.10, 16: 0.08, 32: 0.07, 64: 0.09}}
    timer = FakeTimer(lambda p: table[p.kind][p.size] * (1 if p.channels_last else 1.5))
    result = tune([rules, stream], timer, keys=("chunk_size", "channels_last"))
    assert result.settings.chunk_size == 32 and result.settings.channels_last
    assert result.predicted["32/channels_last"] == pytest.approx(5 * 2.0 + 100 * 0.07)
    assert {p.size for p in timer.points if p.kind == "lrp"} == {4}  # measured once per layout


def test_what_does_not_fit_the_budget_is_not_measured_and_the_last_size_stands_in() -> None:
    timer = FakeTimer(by_layout({8: 1.0, 16: 0.5, 32: 0.4, 64: 0.3}, {8: 1.0, 16: 0.5, 32: 0.4, 64: 0.3}))
    # the first point (8) costs 16 s and is always made; 16 costs ~32 s: fits 50 s, 32 (~64 s) does not
    result = tune([PLAIN], timer, budget=50, keys=("chunk_size",))
    assert sorted({p.size for p in timer.points}) == [8, 16]
    assert result.settings.chunk_size == 16  # 32 and 64 predicted with 16's time: not better, so not chosen
    assert result.predicted["32/channels_last"] == result.predicted["16/channels_last"]


def test_a_spent_budget_still_measures_each_kind_in_both_layouts() -> None:
    """The budget runs out on the first layout's passes: the other layout is still measured at the
    smallest chunk (and wins here), rather than dropped from the comparison."""
    rules = PassKind("lrp", True, per_image=5, images=4)
    stream = PassKind("forward", False, per_image=100, images=1, steps=400)
    table = {"lrp": {4: 2.0}, "forward": {8: 0.10, 16: 0.08, 32: 0.07, 64: 0.09}}
    timer = FakeTimer(lambda p: table[p.kind][p.size] * (1.5 if p.channels_last else 1))
    result = tune([rules, stream], timer, budget=1, keys=("chunk_size", "channels_last"))
    assert {(p.kind, p.size, p.channels_last) for p in timer.points} == {
        ("lrp", 4, True), ("forward", 8, True), ("lrp", 4, False), ("forward", 8, False)}
    assert (result.settings.chunk_size, result.settings.channels_last) == (8, False)
    assert result.predicted["8/contiguous"] == pytest.approx(5 * 2.0 + 100 * 0.10)


def test_a_spent_budget_keeps_both_layouts_when_two_kinds_share_a_name() -> None:
    """The occlusion stream (call size = chunk) and the logits forward (call size = batch of 4) are both
    forward passes: with the budget spent, the contiguous logits forward at 4 is not measured and the
    stream's time at 8 stands in for it, so the contiguous layout is still compared (at 224 px the
    probe dropped it because only smaller sizes could stand in)."""
    logits = PassKind("forward", False, per_image=1, images=4)
    stream = PassKind("forward", False, per_image=100, images=1, steps=400)
    timer = FakeTimer(lambda p: (1.5 if p.channels_last else 1.0) * {4: 0.2, 8: 0.1}.get(p.size, 0.1))
    result = tune([logits, stream], timer, budget=1, keys=("chunk_size", "channels_last"))
    assert ("forward", 4, False) not in {(p.kind, p.size, p.channels_last) for p in timer.points}
    assert result.predicted["8/contiguous"] == pytest.approx(1 * 0.1 + 100 * 0.1)
    assert (result.settings.chunk_size, result.settings.channels_last) == (8, False)


def outlier_once(table, outlier: Point, factor: float):
    """Timings from ``table``, with the first timing of ``outlier`` ``factor`` times too slow."""
    seen: set[Point] = set()

    def measure(point: Point) -> float:
        value = table(point)
        if point == outlier and point not in seen:
            value *= factor
        seen.add(point)
        return value
    return measure


RULES = PassKind("lrp", True, per_image=5, images=4)
STREAM = PassKind("forward", False, per_image=100, images=1, steps=400)


def contiguous_4_percent_faster_but_one_lrp_outlier():
    table = {"lrp": {4: 2.0}, "forward": {8: 0.10, 16: 0.08, 32: 0.07, 64: 0.09}}
    times = lambda p: table[p.kind][p.size] * (1.04 if p.channels_last else 1.0)  # noqa: E731
    return outlier_once(times, Point("lrp", 4, False), 1.15)


def test_a_close_call_between_the_layouts_is_timed_again_before_it_is_made() -> None:
    """Contiguous is 4 % faster, but its first LRP timing is 15 % too slow: the ladder alone picks
    channels-last; re-timing every kind in both layouts, paired, corrects it."""
    timer = FakeTimer(contiguous_4_percent_faster_but_one_lrp_outlier())
    result = tune([RULES, STREAM], timer, keys=("chunk_size", "channels_last"))
    assert (result.settings.chunk_size, result.settings.channels_last) == (32, False)
    assert result.predicted["32/contiguous"] == pytest.approx(5 * 2.0 + 100 * 0.07)
    retimed = [(p.kind, p.size, p.channels_last) for p in timer.points].count
    assert retimed(("lrp", 4, False)) == retimed(("lrp", 4, True)) == 2  # the ladder's timing and one more
    assert retimed(("forward", 32, False)) == retimed(("forward", 32, True)) == 2
    assert any("close call" in note for note in result.notes)


def test_without_the_second_timing_the_outlier_decides(monkeypatch) -> None:
    """The control of the test above: the same timings, no close call recognised."""
    monkeypatch.setattr(Tuner, "CLOSE_CALL", 0.0)
    result = tune([RULES, STREAM], FakeTimer(contiguous_4_percent_faster_but_one_lrp_outlier()),
                  keys=("chunk_size", "channels_last"))
    assert (result.settings.chunk_size, result.settings.channels_last) == (32, True)
    assert not any("close call" in note for note in result.notes)


def test_a_clear_call_is_not_timed_again() -> None:
    timer = FakeTimer(lambda p: {"lrp": 2.0, "forward": 0.1}[p.kind] * (1.5 if p.channels_last else 1.0))
    result = tune([RULES, STREAM], timer, keys=("chunk_size", "channels_last"))
    assert not result.settings.channels_last
    assert len(timer.points) == len(set(timer.points))  # every point timed once


def test_a_second_timing_slower_than_the_first_does_not_raise_the_prediction() -> None:
    """Timings are only ever too slow: each point keeps its fastest."""
    calls: dict[Point, int] = {}

    def measure(point: Point) -> float:
        calls[point] = calls.get(point, 0) + 1
        return {"lrp": 2.0, "forward": 0.1}[point.kind] * (1.02 if point.channels_last else 1.0) * calls[point]

    result = tune([RULES, STREAM], FakeTimer(measure), keys=("chunk_size", "channels_last"))
    assert max(calls.values()) == 2  # the close call was timed again
    assert result.predicted["8/contiguous"] == pytest.approx(5 * 2.0 + 100 * 0.1)
    assert not result.settings.channels_last


def test_explicit_values_are_never_probed() -> None:
    timer = FakeTimer(by_layout({8: 1.0, 16: 0.1, 32: 0.1, 64: 0.1}, {8: 0.1, 16: 0.1, 32: 0.1, 64: 0.1}))
    result = tune([PLAIN], timer, keys=())
    assert result.settings == FIXED and timer.points == []


def test_threads_are_added_only_where_they_pay() -> None:
    times = {1: 1.0, 2: 0.6, 4: 0.59}
    timer = FakeTimer(lambda p: times[p.threads])
    result = tune([PLAIN], timer, keys=("threads",), max_threads=4)
    assert result.settings.threads == 2  # 4 threads are within 3 % of 2
    assert tune([PLAIN], FakeTimer(lambda p: times[p.threads]), keys=("threads",), max_threads=1).settings.threads == 1
    assert tune([PLAIN], FakeTimer(lambda p: times[p.threads]), keys=("threads",), max_threads=4,
                cuda=True).settings.threads == 1


@pytest.mark.parametrize("replayed, expected", [(0.6, True), (1.2, False)])
def test_forward_reuse_follows_the_replayed_pass_time(replayed, expected) -> None:
    timer = FakeTimer(lambda p: replayed if p.replay else 1.0)
    result = tune([PLAIN], timer, keys=("reuse_bottom_forward",), replayable=True)
    assert result.settings.reuse_bottom_forward is expected
    assert any(p.replay for p in timer.points)
    nothing = FakeTimer(lambda p: 2.0 if p.replay else 1.0)
    assert tune([PLAIN], nothing, keys=("reuse_bottom_forward",), replayable=False).settings.reuse_bottom_forward
    assert not any(p.replay for p in nothing.points)


@pytest.mark.parametrize("cuda, tf32_time, expected", [(True, 0.5, "tf32"), (True, 0.99, "fp32"), (False, 0.5, "fp32")])
def test_tf32_on_cuda_where_it_is_measured_faster(cuda, tf32_time, expected) -> None:
    timer = FakeTimer(lambda p: tf32_time if p.precision == "tf32" else 1.0)
    assert tune([PLAIN], timer, keys=("precision",), cuda=cuda).settings.precision == expected
    assert cuda or timer.points == []


def test_a_spent_budget_still_times_tf32_and_threads_once() -> None:
    """A job of many kinds spends the budget on the chunk ladder; TF32 (on CUDA) and another thread
    count (on a CPU) are still timed once on the heaviest kind, not dropped as unaffordable."""
    kinds = [PassKind(f"lrp{i}", True, per_image=10, images=64) for i in range(6)]
    tf32 = FakeTimer(lambda p: 0.3 if p.precision == "tf32" else 1.0)
    result = tune(kinds, tf32, budget=1, cuda=True)
    assert result.settings.precision == "tf32"
    assert sum(p.precision == "tf32" for p in tf32.points) == 1
    threads = FakeTimer(lambda p: 0.5 if p.threads == 2 else 1.0)
    assert tune(kinds, threads, budget=1, max_threads=2).settings.threads == 2


OCCLUSION = PassKind("forward", False, per_image=150, images=1, steps=8 * 150)  # a flat stream of forwards


@pytest.mark.parametrize("folded_time, foldable, expected", [(0.9, True, True), (0.995, True, False), (0.5, False, False)])
def test_batchnorms_are_folded_where_the_folded_forward_measures_faster(folded_time, foldable, expected) -> None:
    timer = FakeTimer(lambda p: folded_time if p.fold else 1.0)
    result = tune([PLAIN, OCCLUSION], timer, keys=("fold_batchnorm",), foldable=foldable)
    assert result.settings.fold_batchnorm is expected
    assert any(p.fold and p.kind == "forward" for p in timer.points) is foldable
    # no forward-only stream in the job: nothing to fold, nothing timed
    nothing = FakeTimer(lambda p: 0.1 if p.fold else 1.0)
    assert not tune([PLAIN], nothing, keys=("fold_batchnorm",), foldable=True).settings.fold_batchnorm
    assert not any(p.fold for p in nothing.points)


def test_a_manifest_from_before_folding_resumes_without_folding() -> None:
    recorded = {"chunk_size": 8, "channels_last": True, "threads": 1, "reuse_bottom_forward": True, "precision": "fp32"}
    assert ExecutionSettings.from_dict(recorded).fold_batchnorm is False
    with pytest.raises(ValueError, match="lack threads"):
        ExecutionSettings.from_dict({k: v for k, v in recorded.items() if k != "threads"})


@pytest.mark.parametrize("images, steps, chunk", list(itertools.product([1, 2, 5, 16], [1, 3, 32], [1, 3, 8, 16, 64])))
def test_call_size_is_the_largest_tile_the_pipeline_makes(images, steps, chunk) -> None:
    largest = max((s.stop - s.start) * (i.stop - i.start) for s, i in tiles(steps, images, chunk))
    assert PassKind("plain", True, 1, images=images, steps=steps).call_size(chunk) == largest


def test_auto_keys_fall_back_outside_a_run_and_resolve_into_a_spec() -> None:
    spec = validate_job({"name": "t", "model": {"name": "resnet34"}, "dataset": {"kind": "synthetic"},
                         "methods": [{"name": "gradient"}], "runtime": {"chunk_size": 5}})
    assert open_keys(spec.runtime) == ["channels_last", "threads", "reuse_bottom_forward", "precision", "fold_batchnorm"]
    assert fallback_settings(spec.runtime, "cpu") == ExecutionSettings(5, True, 1, True, "fp32")
    assert fallback_settings(spec.runtime, "cuda").precision == "tf32"
    resolved = with_settings(spec, ExecutionSettings(16, False, 2, False, "fp32"))
    assert open_keys(resolved.runtime) == [] and resolved.runtime.chunk_size == 16 and resolved.runtime.threads == 2
    assert spec.runtime.chunk_size == 5  # the spec as given is untouched
    assert ExecutionSettings.from_dict(resolved.runtime.model_dump()) == ExecutionSettings(16, False, 2, False, "fp32")
