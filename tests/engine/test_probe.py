"""The probe's timing of one kind of pass (``engine.probe``): what it runs, not how long it takes."""

from __future__ import annotations

import torch

from benchmark.config import validate_job
from benchmark.engine.probe import PassProbe
from benchmark.models import load_model
from benchmark.models.tuning import Point

from .jobs import TINY


def counting_probe(monkeypatch) -> tuple[PassProbe, list[int]]:
    """A probe on the tiny model that counts the model's calls; every timed call 'takes' 10 ms (cheap:
    repeated), so the count does not depend on this machine's speed."""
    def cheap(once, device) -> float:
        once()
        return 0.01

    monkeypatch.setattr("benchmark.engine.probe.timed_once", cheap)
    model = load_model(validate_job(TINY), torch.device("cpu"))
    calls: list[int] = []
    model.module.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    return PassProbe(model, 32, {}), calls


def test_the_first_timing_of_each_kind_follows_one_untimed_pass(monkeypatch) -> None:
    """The first pass of a kind in a process pays for set-up, which would count against the layout
    timed first: that pass is made once per kind and not timed."""
    probe, calls = counting_probe(monkeypatch)
    probe(Point("forward", 2, True))
    first = len(calls)
    calls.clear()
    probe(Point("forward", 2, False))  # the same kind in the other layout: no extra pass
    assert first == len(calls) + 1 == 4  # untimed, first at this shape, two repeats (the faster counts)
    calls.clear()
    probe(Point("plain", 2, True))  # a new kind: one extra pass again
    assert len(calls) == first
    assert set(calls) == {2}  # every pass at the measured size
