"""The one walk per batch: every state produced once, in order, shared by every experiment, and the
trained model back in place afterwards, also when an experiment fails."""

from __future__ import annotations

import pyarrow as pa
import pytest
import torch

from benchmark.config import validate_job
from benchmark.config.spec import ExperimentSection
from benchmark.data.loader import ImageBatch
from benchmark.experiments import Batch, Experiment, ModelState, Setup, register_experiment, unregister_experiment
from benchmark.experiments.batch import BatchEvaluator
from benchmark.models import load_model, plan_for

from ..engine.jobs import TINY


class Spy(Experiment):
    """Records the states it is shown and the map tensors it gets (no table)."""

    seen: list[tuple] = []
    fail_at: int | None = None

    def __init__(self, methods: list) -> None:
        self.methods = methods

    @classmethod
    def build(cls, setup: Setup) -> "Spy":
        return cls(setup.methods)

    def start(self, batch: Batch) -> None:
        type(self).seen.append(("start", len(batch)))

    def observe(self, state: ModelState) -> None:
        if self.fail_at is not None and state.index == self.fail_at:
            raise RuntimeError("spy fails")
        type(self).seen.append((state.seed, state.index, tuple(id(m) for m in state.maps_of(self.methods))))

    def finish(self) -> dict[str, pa.Table]:
        return {}


class SpySection(ExperimentSection):
    pass


@pytest.fixture
def spy():
    Spy.seen, Spy.fail_at = [], None
    register_experiment("spy", spec=SpySection)(Spy)
    yield Spy
    unregister_experiment("spy")


def evaluator_for(job: dict) -> tuple[BatchEvaluator, ImageBatch]:
    spec = validate_job(job)
    model = load_model(spec, torch.device("cpu"))
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    return BatchEvaluator(spec, model, plan_for(spec, model.module)), ImageBatch(["a", "b"], images, torch.tensor([1, 2]), [None, None])


JOB = {**TINY, "spy": {"enabled": True}, "methods": [{"name": "gradient"}, {"name": "lrp", "output_relevance": "logit"}],
       "kept_activation_explanation": {"enabled": True, "layer": "layer4.0"}, "logits": {"enabled": True}}


def test_each_state_once_in_order_and_its_maps_shared(spy, monkeypatch) -> None:
    evaluator, images = evaluator_for(JOB)
    before = {k: v.clone() for k, v in evaluator.model.module.state_dict().items()}
    calls: dict[str, int] = {}
    for method in evaluator.methods:
        def counted(*args, method=method, attribute=method.attribute):
            calls[method.id] = calls.get(method.id, 0) + 1
            return attribute(*args)
        monkeypatch.setattr(method, "attribute", counted)
    tables = evaluator.evaluate(images)
    # the trained model, then seed 0's stages 1, 2 and seed 1's: once each
    assert [entry[:2] for entry in spy.seen] == [("start", 2), (None, 0), (0, 1), (0, 2), (1, 1), (1, 2)]
    assert evaluator.walk.randomizer.randomizations == 4 and evaluator.counts.states == 5
    # each method explained each state once, though occlusion (trained), the check, the kept-features
    # explanation (LRP) and the spy all asked for the maps: they got the same tensors
    assert calls == {"gradient": 5, "lrp_epsilon_plus_flat_logit": 5}
    experiments = {type(e).__name__: e for e in evaluator.experiments}
    assert list(experiments) == ["FaithfulnessCheck", "RandomizationCheck", "LogitPreservation", "KeptFeatureExplanation", "SignFlips", "Spy"]
    assert {"randomization", "occlusion", "logits", "kept_features"} <= set(tables)
    for name, tensor in evaluator.model.module.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_a_failing_experiment_leaves_the_trained_model_in_place(spy) -> None:
    evaluator, images = evaluator_for(JOB)
    before = {k: v.clone() for k, v in evaluator.model.module.state_dict().items()}
    spy.fail_at = 2
    with pytest.raises(RuntimeError, match="spy fails"):
        evaluator.evaluate(images)
    assert evaluator.walk.randomizer.randomized_modules == set()
    for name, tensor in evaluator.model.module.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    spy.fail_at, spy.seen[:] = None, []
    evaluator.evaluate(images)  # the next batch starts afresh
    assert [entry[:2] for entry in spy.seen][-1] == (1, 2)


def test_no_randomized_state_is_walked_when_no_experiment_looks_at_one() -> None:
    job = {**TINY, "randomization": {**TINY["randomization"], "enabled": False}, "runtime": {**TINY["runtime"], "save_maps": 1}}
    evaluator, images = evaluator_for(job)
    tables = evaluator.evaluate(images, frozenset({"a"}))
    assert evaluator.walk.randomizer.randomizations == 0 and evaluator.counts.states == 1
    assert set(tables) == {"occlusion", "maps"} and set(tables["maps"].column("stage").to_pylist()) == {0}


@pytest.mark.parametrize("methods, forwards", [
    ([{"name": "gradient"}, {"name": "guided_backprop"}], 0),  # the gradient pass gives the logits
    ([{"name": "guided_backprop"}], 4),  # no plain pass: one forward per randomized state
])
def test_the_sign_flips_read_the_logits_of_the_gradient_pass(methods, forwards) -> None:
    """The explained logit of a randomized state is what the plain gradient pass's forward computed:
    no forward pass of its own where that pass is made (counted), the same values as a fresh one."""
    from benchmark.models.randomization import Randomizer
    from benchmark.experiments.walk import stage_walk

    evaluator, images = evaluator_for({**TINY, "methods": methods, "occlusion": {"enabled": False}})
    calls = []
    handle = evaluator.model.module.register_forward_pre_hook(lambda module, args: calls.append(torch.is_grad_enabled()))
    try:
        tables = evaluator.evaluate(images)
    finally:
        handle.remove()
    assert evaluator.walk.stage_forward is (forwards > 0)
    assert calls.count(False) == 1 + forwards  # the trained model's forward, then the states' own
    rows = tables["target_logits"].to_pandas()
    inputs = evaluator.model.normalize(images.pixels)
    with stage_walk(Randomizer(evaluator.model.module), evaluator.plan, [0, 1]) as states, torch.no_grad():
        for seed, stage in states:
            logits = evaluator.model.module(inputs).gather(1, images.labels.view(-1, 1)).squeeze(1).double()
            got = rows[(rows.seed == seed) & (rows.stage == stage.index)].sort_values("image_id")
            torch.testing.assert_close(torch.tensor(got.logit.to_numpy()), logits, rtol=1e-5, atol=1e-6)
