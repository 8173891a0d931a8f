"""The profile's arithmetic on a fake clock: a span's time excludes the spans nested in it, the rest is
'other', the parts add up to the profiled time, and a span outside a profile does nothing."""

from __future__ import annotations

import pytest

from benchmark import profiling
from benchmark.profiling import OTHER, Profile, profiling as active, span


@pytest.fixture
def clock(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(profiling.time, "perf_counter", lambda: now[0])

    def advance(seconds: float) -> None:
        now[0] += seconds

    return advance


def test_nested_spans_are_charged_exclusively(clock) -> None:
    with Profile() as profile:
        clock(1)  # other
        with span("outer"):
            clock(2)
            with span("inner"):
                clock(4)
            clock(8)
        with span("inner"):
            clock(16)
        clock(32)  # other
    assert profile.parts() == {"inner": 20, "outer": 10, OTHER: 33}  # largest first, 'other' last
    assert dict(profile.calls) == {"outer": 1, "inner": 2}
    assert profile.total == 63 == sum(profile.parts().values())


def test_a_span_outside_a_profile_does_nothing(clock) -> None:
    assert not active()
    with span("anything"):
        clock(1)
    with Profile() as profile:
        assert active()
    assert not active() and profile.parts() == {OTHER: 0}
