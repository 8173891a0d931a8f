"""What the paper predicts, and what must hold on any trained ReLU network, checked on a genuinely
trained one: the test bed (a small ResNet trained on scikit-learn's digits) through the project's own
pipeline. Random weights cannot show any of it: on a random ReLU network integrated gradients equal
gradient×input, guided backprop barely changes under randomization, and an untrained EfficientNet-B0
has all-zero LRP maps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.attribution import AttributionContext, build_method
from benchmark.config import validate_job
from benchmark.config.spec import GradientInputSpec, IntegratedGradientsSpec, LRPSpec
from benchmark.data import Preprocess, build_dataset, select_records
from benchmark.experiments.walk import stage_walk
from benchmark.models import Randomizer, load_model, plan_for
from benchmark.results import OutputStore, read_table
from benchmark.results.maps import decode_map
from benchmark.testbed import MIN_VAL_ACCURACY, cache_key
from benchmark.testbed import cache as testbed_cache
from benchmark.testbed.train import Recipe

from .conftest import digits_job

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture(scope="module")
def model_and_images(testbed):
    """The test bed as a job loads it, and 24 validation digits as the pipeline decodes them."""
    spec = validate_job(digits_job())
    model = load_model(spec)
    dataset = build_dataset(spec)
    records = select_records(spec, dataset)
    preprocess = Preprocess.from_spec(spec.dataset)
    pixels = torch.stack([preprocess(dataset.decode(record))[0] for record in records])
    labels = torch.tensor([record.label for record in records])
    return spec, model, model.normalize(pixels), labels


def signed_and_absolute_ssim(out) -> pd.DataFrame:
    """Mean SSIM per method over images and all randomized stages (second-moment normalized)."""
    rows = read_table(OutputStore(str(out)), "randomization").to_pandas()
    return rows.pivot_table(index="method", columns="absolute", values="value", aggfunc="mean")


# ------------------------------------------------------------------------------------------
# The test bed itself
# ------------------------------------------------------------------------------------------


def test_the_test_bed_is_trained_and_found_again_without_training(testbed, monkeypatch) -> None:
    assert testbed.val_accuracy >= MIN_VAL_ACCURACY
    assert testbed.path.is_file() and testbed.info["key"] == cache_key()
    assert testbed.path.name == f"tiny-resnet-digits-{cache_key()}.pt"

    def no_training(recipe):
        raise AssertionError("the cached test bed was trained again")

    monkeypatch.setattr(testbed_cache.training, "train", no_training)
    again = testbed_cache.testbed()
    assert again.path == testbed.path and again.info == testbed.info


def test_the_cache_key_follows_the_recipe(testbed) -> None:
    assert cache_key(Recipe()) == cache_key(Recipe())
    assert cache_key(Recipe(epochs=Recipe().epochs + 1)) != cache_key()
    assert cache_key(Recipe(seed=1)) != cache_key()


def test_the_pipeline_loads_the_trained_network_and_it_classifies_the_digits(model_and_images, testbed) -> None:
    spec, model, inputs, labels = model_and_images
    assert model.weights_source.startswith(f"testbed {testbed.path}")
    with torch.no_grad():
        accuracy = (model.module(inputs).argmax(1) == labels).float().mean().item()
    assert accuracy >= MIN_VAL_ACCURACY


# ------------------------------------------------------------------------------------------
# The paper's randomization check on a trained network
# ------------------------------------------------------------------------------------------


def test_the_noise_baseline_has_the_lowest_ssim(digits_run) -> None:
    ssim = signed_and_absolute_ssim(digits_run)
    for absolute in (False, True):
        column = ssim[absolute]
        assert column.idxmin() == "noise", column
        assert abs(column["noise"]) < 0.05  # Theorem 1: i.i.d. maps are all but uncorrelated


def test_gradient_and_gradient_times_input_change_more_than_guided_backprop_and_lrp(digits_run) -> None:
    """The paper's Fig. 2 ordering: the gradient family "passes" the randomization check (low SSIM),
    guided backprop and LRP (seeded with 1) "fail" it (high SSIM)."""
    signed = signed_and_absolute_ssim(digits_run)[False]
    for low in ("gradient", "gradient_x_input", "integrated_gradients_16"):
        for high in ("guided_backprop", "lrp_epsilon_plus_flat"):
            assert signed[low] + 0.2 < signed[high], signed


def test_logit_seeded_lrp_maps_flip_with_the_logit_and_default_ones_do_not(digits_run, model_and_images) -> None:
    """After top-layer randomization the target logit is often negative. LRP's rules are linear in the
    relevance they start from, so the map seeded with the logit z is z times the map seeded with 1 (the
    default): it flips its sign with z. The default map is not multiplied by anything; its total is
    positive for the trained model and for all but a few randomized pairs (z near 0, where the ε rule of
    the randomized head divides by it)."""
    spec, model, inputs, labels = model_and_images
    rows = read_table(OutputStore(str(digits_run)), "maps").to_pandas()
    maps = rows[(rows.kind == "map") & (rows.stage > 0)]
    decoded = {
        method: {
            (row.image_id, row.stage): decode_map(row["values"], list(row["shape"]), row["scale"]).ravel()
            for _, row in maps[maps.method == method].iterrows()
        }
        for method in ("lrp_epsilon_plus_flat", "lrp_epsilon_plus_flat_logit")
    }
    one, logit = decoded["lrp_epsilon_plus_flat"], decoded["lrp_epsilon_plus_flat_logit"]
    assert len(one) == len(logit) == 24 * 7

    # the target logits of the randomized models, straight from the model (same plan, same seed)
    ids = [f"digit-{i:04d}" for i in range(4, 5 * 24, 5)]
    randomizer = Randomizer(model.module)
    target_logit = {}
    with stage_walk(randomizer, plan_for(spec, model.module), [0]) as states, torch.no_grad():
        for _, stage in states:
            z = model.module(inputs)[torch.arange(len(labels)), labels]
            target_logit.update({(image, stage.index): float(value) for image, value in zip(ids, z)})
    for key, z in target_logit.items():
        cosine = float(one[key] @ logit[key]) / (np.linalg.norm(one[key]) * np.linalg.norm(logit[key]))
        assert cosine == pytest.approx(np.sign(z), abs=1e-3), key  # logit-seeded = z × default
    flipped = np.mean([z < 0 for z in target_logit.values()])
    assert 0.1 < flipped < 0.9  # the effect is there to see
    assert np.mean([total.sum() < 0 for total in one.values()]) < 0.5 * flipped
    assert np.mean([total.sum() < 0 for total in logit.values()]) > 0.8 * flipped

    ssim = signed_and_absolute_ssim(digits_run)
    assert ssim.loc["lrp_epsilon_plus_flat", False] > ssim.loc["lrp_epsilon_plus_flat_logit", False] + 0.05
    # the absolute maps differ by a positive factor per image: identical after normalization
    assert ssim.loc["lrp_epsilon_plus_flat", True] == pytest.approx(ssim.loc["lrp_epsilon_plus_flat_logit", True], abs=1e-6)


# ------------------------------------------------------------------------------------------
# What holds on any trained ReLU network
# ------------------------------------------------------------------------------------------


def test_integrated_gradients_differ_from_gradient_times_input_and_are_complete(model_and_images) -> None:
    """With BatchNorm shifts and biases the network is not positively homogeneous: IG (zero baseline)
    sums to f(x) - f(0) (completeness), gradient×input does not, and the maps differ."""
    _, model, inputs, labels = model_and_images
    context = AttributionContext([f"i{k}" for k in range(len(labels))], chunk_size=64)
    ig = build_method(IntegratedGradientsSpec(name="integrated_gradients", steps=32), model)
    gxi = build_method(GradientInputSpec(name="gradient_x_input"), model)
    ig_maps = ig.attribute(model, inputs, labels, context)
    gxi_maps = gxi.attribute(model, inputs, labels, context)
    with torch.no_grad():
        rows = torch.arange(len(labels))
        difference = model.module(inputs)[rows, labels] - model.module(torch.zeros_like(inputs))[rows, labels]
    ig_error = (ig_maps.sum(dim=(1, 2, 3)) - difference).abs() / difference.abs()
    gxi_error = (gxi_maps.sum(dim=(1, 2, 3)) - difference).abs() / difference.abs()
    assert ig_error.median() < 0.02 and gxi_error.median() > 0.1
    relative = (ig_maps - gxi_maps).flatten(1).norm(dim=1) / gxi_maps.flatten(1).norm(dim=1)
    assert relative.min() > 0.1


def test_lrp_conserves_relevance_through_the_trained_network(model_and_images) -> None:
    """Adaptive β passes every conv neuron's relevance on exactly (α − β = 1, bias left out), zennit's
    canonizer merges the trained BatchNorms and turns residual sums into conserving modules; only the
    dense head's ε rule gives its bias a share. So the input relevance, seeded with 1, is (z − b)/z."""
    _, model, inputs, labels = model_and_images
    spec = LRPSpec(name="lrp", composite="adaptive_beta", epsilon=1e-12)
    relevance = build_method(spec, model).attribute(model, inputs, labels, AttributionContext([str(k) for k in range(24)]))
    with torch.no_grad():
        logits = model.module(inputs)[torch.arange(len(labels)), labels]
    bias = model.module.fc.bias[labels]
    assert logits.abs().min() > 1.0
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), (logits - bias) / logits, rtol=0, atol=2e-3)


def test_lean_rules_give_zennits_relevance_on_the_trained_network(model_and_images) -> None:
    """The rules attached lean (the LRP method's default) against the same composites attached by
    zennit, on trained weights, where ReLUs really zero out inputs and the z⁺ / γ / αβ passes that
    lean skips are the ones zennit runs on all-zero inputs: bitwise the same relevance."""
    from benchmark.attribution.backward import AtInput, path_gradient
    from benchmark.attribution.lean_rules import lean
    from benchmark.attribution.lrp import CANONIZERS, COMPOSITES, COMPOSITE_FAMILIES

    _, model, inputs, labels = model_and_images
    names = [n for n in sorted(COMPOSITES) if model.family in COMPOSITE_FAMILIES.get(n, (model.family,))]
    assert {"epsilon_plus_flat", "alpha2beta1", "adaptive_beta", "epsilon_gamma_box"} <= set(names)
    for name in names:
        spec = LRPSpec(name="lrp", composite=name)
        results = []
        for attach in (lambda c: c, lean):
            composite = attach(COMPOSITES[name](spec, model.input_bounds(inputs[:1]), CANONIZERS[model.family]()))
            with composite.context(model.module):
                results.append(path_gradient(model.module, AtInput(inputs), labels, 8, output="one"))
        assert results[0].abs().sum() > 0, name
        assert torch.equal(results[1], results[0]), name


def test_replaying_the_trained_bottom_under_lean_rules_changes_no_map_of_the_trained_network(model_and_images) -> None:
    """Guided backprop and LRP record the trained bottom once under their lean rules and replay it in
    every later stage: on the trained network, where ReLUs really switch units off, each replayed map
    equals the map of a fresh pass bit for bit, and the replay did skip modules."""
    from benchmark.attribution.reuse import REPLAYED, BottomReuse
    from benchmark.config.spec import GuidedBackpropSpec

    spec, model, inputs, labels = model_and_images
    plan = plan_for(spec, model.module)
    ids = [str(k) for k in range(len(labels))]
    for method_spec in (GuidedBackpropSpec(name="guided_backprop"), LRPSpec(name="lrp", composite="epsilon_plus_flat"),
                        LRPSpec(name="lrp", composite="alpha2beta1")):
        method = build_method(method_spec, model)
        reuse = BottomReuse(inputs)
        replayed: list[tuple[str, ...]] = []
        method.attribute(model, inputs, labels, AttributionContext(ids, 0, 0, 8, {}, reuse.at(set())))
        randomizer = Randomizer(model.module)
        with stage_walk(randomizer, plan, [0]) as states:
            for _, stage in states:
                context = AttributionContext(ids, 0, stage.index, 8, {}, reuse.at(randomizer.randomized_modules))
                handle = model.module.register_forward_pre_hook(lambda m, a: replayed.append(REPLAYED.get()))
                try:
                    reused = method.attribute(model, inputs, labels, context)
                finally:
                    handle.remove()
                fresh = method.attribute(model, inputs, labels, AttributionContext(ids, 0, stage.index, 8, {}))
                assert torch.equal(reused, fresh), (method.id, stage.index)
        reuse.release()
        assert any(replayed), method.id
