"""The repaired randomization checks (sMPRT, eMPRT, random logit, the paper's §5 refinements) and the
sign-flip diagnostic on tiny untrained models: the mechanics against independent references (Captum,
skimage, numpy, scipy, the project's own plain check). What they show on a trained network is tested
in tests/testbed."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats
import torch
from captum.attr import Saliency
from skimage.metrics import structural_similarity

from ..attribution.attribution_models import NUM_CLASSES, VGGLike, keys, make_bundle, make_inputs, make_targets, seeded
from benchmark.attribution import build_method
from benchmark.attribution.paths import GaussianCloud
from benchmark.config import SpecError, validate_job
from benchmark.config.load import science_dict
from benchmark.experiments import Setup
from benchmark.experiments.check_scores import NON_FINITE, REASONS, ZERO_ENTROPY
from benchmark.experiments.efficient_mprt import EfficientMPRT, entropy_change
from benchmark.experiments.invariant_mask import InvariantMaskMPRT, relevance_mask
from benchmark.experiments.kept_features import layer_relevance
from benchmark.experiments.kept_part import first_to_run, kept_ends, start_order
from benchmark.experiments.non_baseline import NonBaselineMPRT
from benchmark.experiments.random_logit import RandomLogit, other_classes
from benchmark.experiments.randomization_check import RandomizationCheck
from benchmark.experiments.sign_flips import SignFlips
from benchmark.experiments.skip_path import RESIDUAL, branch_relevance
from benchmark.experiments.smooth_mprt import SmoothMPRT
from benchmark.experiments.walk import stage_walk
from benchmark.metrics import MapComparer
from benchmark.models.randomization import Randomizer, build_plan

from .walking import as_written, make_batch, observe_batch

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

SSIM_ONLY = {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False]}


@pytest.fixture(scope="module")
def resnet18():
    import torchvision

    module = seeded(lambda: torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES))
    return make_bundle(module, "resnet", "resnet18")


def top_down(module, boundaries: int = 2):
    return build_plan(module, mode="top_down", head="fc", boundary=r"\.conv1$", every=1, max_boundaries=boundaries)


def job(methods: list[dict], metrics: dict | None = None, seeds: list[int] = [0], **sections) -> object:
    """A job spec around the test's model (its name and dataset only label the rows)."""
    return validate_job({
        "name": "t", "model": {"name": "resnet34", "weights": "random"}, "dataset": {"kind": "synthetic", "crop": 32},
        "methods": methods, "metrics": metrics or SSIM_ONLY, "randomization": {"seeds": seeds}, **sections,
    })


def setup(spec, model, plan, chunk_size: int = 64) -> Setup:
    return Setup(spec, model, plan, [build_method(m, model) for m in spec.methods], chunk_size)


def rows_of(tables: dict, check: str | None = None):
    frame = as_written(tables["check_scores"], "check_scores").to_pandas()
    return frame if check is None else frame[frame["check"] == check]


def trained_and_randomized(model, plan, seed: int, stage: int, compute):
    """``compute()`` with the trained model, and with the model in (seed, stage) of the plan."""
    trained = compute()
    with stage_walk(Randomizer(model.module), plan, [seed]) as states:
        for _, current in states:
            if current.index == stage:
                randomized = compute()
                break
    return trained, randomized


def sk_ssim_rows(reference: torch.Tensor, other: torch.Tensor) -> list[float]:
    """skimage's SSIM of second-moment normalized maps, joint data range, win 7."""
    values = []
    for a, b in zip(reference.double().numpy(), other.double().numpy()):
        a, b = a / np.sqrt(np.mean(a**2)), b / np.sqrt(np.mean(b**2))
        values.append(structural_similarity(a, b, win_size=7, data_range=max(a.max(), b.max()) - min(a.min(), b.min())))
    return values


# ------------------------------------------------------------------------------------------
# sMPRT
# ------------------------------------------------------------------------------------------


def test_smprt_with_one_noise_free_copy_is_the_randomization_check(resnet18) -> None:
    metrics = {"similarities": ["ssim", "mse", "spearman"], "normalizations": ["second_moment", "max_abs"], "absolute": [False, True]}
    spec = job([{"name": "gradient"}, {"name": "lrp", "composite": "epsilon_plus_flat"}], metrics, seeds=[0, 1], smprt={"enabled": True, "samples": 1})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    smooth = rows_of(observe_batch(SmoothMPRT.build(setup(spec, resnet18, plan)), resnet18, plan, [0, 1], make_batch(inputs, targets)))
    plain = as_written(observe_batch(RandomizationCheck(setup(spec, resnet18, plan)), resnet18, plan, [0, 1],
                                     make_batch(inputs, targets))["randomization"], "randomization").to_pandas()
    on = ["image_id", "method", "seed", "stage", "normalization", "absolute"]
    both = smooth.rename(columns={"score": "metric"}).merge(plain, on=on + ["metric"], suffixes=("", "_plain"))
    assert len(both) == len(plain) == 3 * 2 * 2 * 3 * 12
    np.testing.assert_allclose(both.value, both.value_plain, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(both.bound, both.bound_plain, rtol=1e-9, atol=1e-12)
    assert (smooth["check"] == "smprt").all() and smooth.reason.isna().all() and smooth.layer.isna().all()


def test_smprt_is_the_mean_of_captum_gradients_over_the_noisy_copies(resnet18) -> None:
    samples, magnitude = 3, 0.2
    spec = job([{"name": "gradient"}], seeds=[1], smprt={"enabled": True, "samples": samples, "noise_magnitude": magnitude, "seed": 5})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    rows = rows_of(observe_batch(SmoothMPRT.build(setup(spec, resnet18, plan, chunk_size=4)), resnet18, plan, [1],
                                 make_batch(inputs, targets)))
    copies = GaussianCloud(inputs, keys(3), samples, magnitude, 5, stream="smprt", clean_last=True).points(slice(0, samples), slice(0, 3))
    assert torch.equal(copies[-1], inputs)  # the last copy is noise-free, as in Quantus
    sigma = magnitude * (inputs.flatten(1).amax(1) - inputs.flatten(1).amin(1))
    spread = (copies[:-1] - inputs).flatten(2).std(dim=2) / sigma
    assert ((spread > 0.9) & (spread < 1.1)).all()  # σ = noise_magnitude · (max − min) per image

    def smoothed():
        saliency = Saliency(resnet18.module)
        return torch.stack([saliency.attribute(c.clone(), target=targets, abs=False).sum(1) for c in copies]).mean(0)

    for stage in (1, 2):
        trained, randomized = trained_and_randomized(resnet18, plan, 1, stage, smoothed)
        expected = sk_ssim_rows(trained, randomized)
        got = rows[rows.stage == stage].sort_values("image_id").value.to_numpy()
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_smprt_noise_depends_on_the_image_and_copy_only(resnet18) -> None:
    inputs = make_inputs(resnet18, n=3)
    whole = GaussianCloud(inputs, keys(3), 4, 0.1, 0, stream="smprt", clean_last=True).points(slice(0, 4), slice(0, 3))
    alone = GaussianCloud(inputs[2:], keys(3)[2:], 4, 0.1, 0, stream="smprt", clean_last=True).points(slice(1, 3), slice(0, 1))
    assert torch.equal(whole[1:3, 2:], alone)
    smoothgrad = GaussianCloud(inputs, keys(3), 4, 0.1, 0).points(slice(0, 1), slice(0, 3))
    assert not torch.equal(smoothgrad[0], whole[0])  # its own stream, not SmoothGrad's


def test_smprt_of_the_noise_baseline_is_near_zero(resnet18) -> None:
    spec = job([{"name": "noise"}], smprt={"enabled": True, "samples": 4})
    plan = top_down(resnet18.module, 1)
    rows = rows_of(observe_batch(SmoothMPRT.build(setup(spec, resnet18, plan)), resnet18, plan, [0],
                                 make_batch(make_inputs(resnet18), make_targets())))
    assert rows.value.abs().max() < 0.1 and len(rows) == 6


# ------------------------------------------------------------------------------------------
# eMPRT
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_bins, numpy_bins", [(100, 100), ("sturges", "sturges"), ("scott", "scott"), ("freedman_diaconis", "fd")])
def test_emprt_equals_numpy_histogram_entropy_of_the_trained_and_the_last_stage(resnet18, n_bins, numpy_bins) -> None:
    metrics = {"similarities": ["ssim"], "normalizations": ["second_moment"], "absolute": [False, True]}
    spec = job([{"name": "gradient"}, {"name": "lrp", "composite": "epsilon"}], metrics, seeds=[0, 2],
               emprt={"enabled": True, "n_bins": n_bins, "min_bins": 2, "max_bins": 5000})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    experiment = EfficientMPRT.build(setup(spec, resnet18, plan))
    assert experiment.explains_at(0) and experiment.explains_at(3) and not experiment.explains_at(1)
    rows = rows_of(observe_batch(experiment, resnet18, plan, [0, 2], make_batch(inputs, targets)))
    assert set(rows.stage) == {3} and rows.normalization.isna().all() and set(rows.score) == {"entropy_change"}
    for method in experiment.methods:
        for seed in (0, 2):
            trained, randomized = trained_and_randomized(
                resnet18, plan, seed, 3, lambda: method.attribute(resnet18, inputs, targets, _context()).sum(1).double())
            for absolute in (False, True):
                got = rows[(rows.method == method.id) & (rows.seed == seed) & (rows.absolute == absolute)].sort_values("image_id")
                for image, value in enumerate(got.value):
                    e, r = trained[image].numpy(), randomized[image].numpy()
                    e, r = (abs(e), abs(r)) if absolute else (e, r)
                    bins = n_bins if isinstance(n_bins, int) else len(np.histogram_bin_edges(e, bins=numpy_bins)) - 1
                    h_e = scipy.stats.entropy(np.histogram(e, bins=bins)[0])
                    h_r = scipy.stats.entropy(np.histogram(r, bins=bins)[0])  # the trained map's bin count, for both
                    assert value == pytest.approx((h_r - h_e) / h_e, rel=1e-9)


def _context():
    from benchmark.attribution import AttributionContext

    return AttributionContext(keys(3))


def test_emprt_zero_entropy_and_non_finite_maps_are_nan_with_a_reason() -> None:
    value, reason = entropy_change(torch.tensor([0.0, 1.0, float("nan"), 2.0], dtype=torch.float64),
                                   torch.tensor([1.0, 1.5, 1.0, 1.0], dtype=torch.float64))
    assert torch.isnan(value[[0, 2]]).all() and value[1] == 0.5 and value[3] == -0.5
    assert reason.tolist() == [ZERO_ENTROPY, 0, NON_FINITE, 0]
    assert "zero histogram entropy" in REASONS[ZERO_ENTROPY - 1]


def test_emprt_refuses_a_plan_that_is_not_top_down() -> None:
    with pytest.raises(SpecError, match=r"emprt.enabled: .*randomization.mode top_down \(got split\)"):
        job([{"name": "gradient"}], emprt={"enabled": True}, randomization={"mode": "split", "split_after": "layer1"})


# ------------------------------------------------------------------------------------------
# Random logit
# ------------------------------------------------------------------------------------------


def test_the_other_class_is_seeded_per_image_never_the_target_and_uniform() -> None:
    ids = [f"img-{i:05d}" for i in range(3000)]
    targets = torch.arange(3000) % 10
    drawn = other_classes(ids, targets, 10, seed=0)
    assert not (drawn == targets).any() and drawn.min() >= 0 and drawn.max() <= 9
    counts = torch.bincount(drawn, minlength=10)
    assert counts.min() > 220 and counts.max() < 380  # 300 expected per class
    reversed_batch = other_classes(ids[::-1], targets.flip(0), 10, seed=0)
    assert torch.equal(reversed_batch.flip(0), drawn)  # a pure function of (image id, seed), not of the position
    assert not torch.equal(other_classes(ids, targets, 10, seed=1), drawn)


def test_random_logit_compares_the_target_map_with_captum_for_the_other_class(resnet18) -> None:
    spec = job([{"name": "gradient"}, {"name": "noise"}], random_logit={"enabled": True, "seed": 3})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    experiment = RandomLogit.build(setup(spec, resnet18, plan))
    assert not experiment.observes_randomized_states(spec)
    rows = rows_of(observe_batch(experiment, resnet18, plan, [0], make_batch(inputs, targets))).sort_values(["method", "image_id"])
    other = other_classes(keys(3), targets, NUM_CLASSES, 3)
    gradient = rows[rows.method == "gradient"]
    assert gradient.compared_class.tolist() == other.tolist() and gradient.target.tolist() == targets.tolist()
    assert gradient.seed.isna().all() and gradient.stage.isna().all() and gradient["mode"].isna().all()
    saliency = Saliency(resnet18.module)
    target_maps = saliency.attribute(inputs.clone(), target=targets, abs=False).sum(1)
    other_maps = saliency.attribute(inputs.clone(), target=other, abs=False).sum(1)
    np.testing.assert_allclose(gradient.value, sk_ssim_rows(target_maps, other_maps), atol=2e-5)
    # the noise baseline draws afresh for the other class: uncorrelated maps, not the same map twice
    assert rows[rows.method == "noise"].value.abs().max() < 0.1


# ------------------------------------------------------------------------------------------
# §5 (1): the kept part's mask
# ------------------------------------------------------------------------------------------


def test_where_the_kept_part_ends_per_stage(resnet18) -> None:
    plan = top_down(resnet18.module, 2)
    ends = kept_ends(resnet18, plan, None, 32)
    assert {stage: end.label for stage, end in ends.items()} == {
        1: "fc:input", 2: "layer4.1.conv1:input", 3: "layer4.0.conv1:input"}  # conv1 runs before the downsample
    order = start_order(resnet18, 32)
    assert first_to_run(["layer4.0.downsample.0", "layer4.0.conv2", "layer4.0.conv1"], order) == "layer4.0.conv1"
    with pytest.raises(ValueError, match="none of the modules"):
        first_to_run(["no.such.module"], order)
    split = build_plan(resnet18.module, mode="split", head="fc", boundary=r"\.conv1$", every=1, max_boundaries=None,
                       split_after="layer3")
    assert kept_ends(resnet18, split, "layer3", 32)[1].label == "layer3:output"
    bottom_up = build_plan(resnet18.module, mode="bottom_up", head="fc", boundary=r"\.conv1$", every=1, max_boundaries=2)
    assert {end.label for end in kept_ends(resnet18, bottom_up, None, 32).values()} == {"conv1:input"}


def test_relevance_of_a_modules_input_is_that_of_the_output_below_it(resnet18) -> None:
    method = build_method(job([{"name": "lrp", "composite": "epsilon"}]).methods[0], resnet18)
    inputs = make_inputs(resnet18)
    of_input = layer_relevance(resnet18, method, inputs, "layer4.1.conv1", 2, side="input")
    of_output = layer_relevance(resnet18, method, inputs, "layer4.0", 2, side="output")
    torch.testing.assert_close(of_input, of_output, rtol=1e-5, atol=1e-7)
    assert of_input.abs().sum() > 0


def test_masked_rows_equal_the_masked_comparison_of_the_maps(resnet18) -> None:
    metrics = {"similarities": ["ssim", "mse", "spearman"], "normalizations": ["second_moment"], "absolute": [False]}
    spec = job([{"name": "gradient"}, {"name": "lrp", "composite": "epsilon"}], metrics,
               mprt_invariant_mask={"enabled": True, "tolerance": 0.05})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    experiment = InvariantMaskMPRT.build(setup(spec, resnet18, plan))
    assert experiment.explainer.id == "lrp_epsilon"
    rows = rows_of(observe_batch(experiment, resnet18, plan, [0], make_batch(inputs, targets)))
    assert len(rows) == 3 * 3 * 2 * 3 and rows.reason.isna().all()
    comparer = MapComparer(spec.metrics)
    gradient = experiment.methods[0]
    for stage, end in experiment.ends.items():
        mask = relevance_mask(layer_relevance(resnet18, experiment.explainer, inputs, end.module, 64, end.side), 0.05)
        trained, randomized = trained_and_randomized(
            resnet18, plan, 0, stage, lambda: gradient.attribute(resnet18, inputs, targets, _context()).sum(1))
        expected = comparer.compare_masked(trained, randomized, mask)
        got = rows[(rows.stage == stage) & (rows.method == "gradient")]
        assert set(got.layer) == {end.label}
        for k, key in enumerate(comparer.keys):
            values = got[got.score == key.metric].sort_values("image_id")
            np.testing.assert_allclose(values.value, expected[k].numpy(), rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(values.coverage, mask.flatten(1).double().mean(1).numpy())
    assert (rows.coverage < 1).any() and (rows.coverage > 0).all()


def test_the_masked_check_refuses_what_it_cannot_do(resnet18) -> None:
    with pytest.raises(SpecError, match="mprt_invariant_mask.explainer: 'lrp_zplus' is not an LRP method of this job"):
        job([{"name": "lrp", "composite": "epsilon"}], mprt_invariant_mask={"enabled": True, "explainer": "lrp_zplus"})
    with pytest.raises(SpecError, match="mprt_invariant_mask.explainer: .*add an lrp method"):
        job([{"name": "gradient"}], mprt_invariant_mask={"enabled": True})


# ------------------------------------------------------------------------------------------
# §5 (2): the non-baseline component
# ------------------------------------------------------------------------------------------


def test_non_baseline_rows_compare_the_residual_branch_of_the_stage_block(resnet18) -> None:
    metrics = {"similarities": ["ssim", "spearman"], "normalizations": ["second_moment"], "absolute": [False, True]}
    spec = job([{"name": "gradient"}, {"name": "lrp", "composite": "epsilon"}], metrics, mprt_non_baseline={"enabled": True})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    experiment = NonBaselineMPRT.build(setup(spec, resnet18, plan))
    assert experiment.blocks == {1: None, 2: "layer4.1", 3: "layer4.0"}
    assert [m.id for m in experiment.methods] == ["lrp_epsilon"]  # the split is an LRP rule
    rows = rows_of(observe_batch(experiment, resnet18, plan, [0], make_batch(inputs, targets)))
    plain = as_written(observe_batch(RandomizationCheck(setup(spec, resnet18, plan)), resnet18, plan, [0],
                                     make_batch(inputs, targets))["randomization"], "randomization").to_pandas()
    comparer = MapComparer(spec.metrics)
    method = experiment.methods[0]
    # stage 1 randomizes the head: nothing bypasses it, the whole maps are compared (= the plain check)
    head = rows[rows.stage == 1].merge(plain[plain.method == method.id].rename(columns={"metric": "score"}),
                                       on=["image_id", "seed", "stage", "score", "normalization", "absolute"])
    assert len(head) == 12 and head.layer.isna().all()
    np.testing.assert_allclose(head.value_x, head.value_y, rtol=1e-9)
    for stage, block in ((2, "layer4.1"), (3, "layer4.0")):
        trained, randomized = trained_and_randomized(resnet18, plan, 0, stage, lambda: branch_relevance(
            resnet18, method, f"{block}.canonizer_sum", RESIDUAL, inputs, targets, 64).sum(1))
        values, _ = comparer.compare(comparer.prepare(trained), randomized)
        got = rows[rows.stage == stage]
        assert set(got.layer) == {block}
        for k, key in enumerate(comparer.keys):
            selected = got[(got.score == key.metric) & (got.absolute == key.absolute)].sort_values("image_id")
            np.testing.assert_allclose(selected.value, values[k].numpy(), rtol=1e-6)


def test_non_baseline_refuses_models_without_skip_connections() -> None:
    vgg = make_bundle(seeded(lambda: VGGLike()), "vgg", "vgg-like")
    spec = job([{"name": "lrp", "composite": "epsilon"}], mprt_non_baseline={"enabled": True})
    plan = build_plan(vgg.module, mode="top_down", head="classifier.3", boundary=r"features\.\d+$", every=1, max_boundaries=1)
    with pytest.raises(ValueError, match="has no residual blocks"):
        NonBaselineMPRT.build(setup(spec, vgg, plan))
    with pytest.raises(SpecError, match="mprt_non_baseline.enabled: the skip/residual split is an LRP rule"):
        job([{"name": "gradient"}], mprt_non_baseline={"enabled": True})


# ------------------------------------------------------------------------------------------
# The sign-flip diagnostic
# ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["label", "own_prediction"])
def test_sign_flips_equal_the_logits_of_the_randomized_models(resnet18, policy) -> None:
    spec = job([{"name": "gradient"}], randomization={"target": policy, "seeds": [0, 4]})
    plan = top_down(resnet18.module)
    inputs, targets = make_inputs(resnet18), make_targets()
    experiment = SignFlips.build(setup(spec, resnet18, plan))
    assert SignFlips.enabled(spec) and SignFlips.explained_logits
    table = observe_batch(experiment, resnet18, plan, [0, 4], make_batch(inputs, targets), target=policy)["target_logits"]
    rows = as_written(table, "target_logits").to_pandas()
    with torch.no_grad():
        trained = resnet18.module(inputs)
    trained_targets = targets if policy == "label" else trained.argmax(1)
    assert len(rows) == 2 * 3 * 3
    with stage_walk(Randomizer(resnet18.module), plan, [0, 4]) as states, torch.no_grad():
        for seed, stage in states:
            logits = resnet18.module(inputs)
            explained = targets if policy == "label" else logits.argmax(1)
            got = rows[(rows.seed == seed) & (rows.stage == stage.index)].sort_values("image_id")
            assert got.target.tolist() == explained.tolist() and got.trained_target.tolist() == trained_targets.tolist()
            z = logits.gather(1, explained.view(-1, 1)).squeeze(1).double()
            z0 = trained.gather(1, trained_targets.view(-1, 1)).squeeze(1).double()
            np.testing.assert_allclose(got.logit, z.numpy(), rtol=1e-6)
            assert got.flipped.tolist() == (z * z0 < 0).tolist()


# ------------------------------------------------------------------------------------------
# Sections
# ------------------------------------------------------------------------------------------


def test_check_sections_are_off_by_default_and_leave_the_spec_hash_alone() -> None:
    plain = job([{"name": "gradient"}])
    assert not plain.section("smprt").enabled and plain.section("smprt").samples == 50
    assert plain.section("emprt").n_bins == 100 and plain.section("random_logit").seed == 0
    assert not {"smprt", "emprt", "random_logit", "mprt_invariant_mask", "mprt_non_baseline"} & set(science_dict(plain))
    with_checks = job([{"name": "gradient"}], smprt={"enabled": True})
    assert science_dict(with_checks)["smprt"] == {"enabled": True, "samples": 50, "noise_magnitude": 0.1, "seed": 0}


@pytest.mark.parametrize("section, message", [
    ({"smprt": {"samples": 0}}, "smprt.samples: Input should be greater than or equal to 1"),
    ({"smprt": {"noise": 0.1}}, "smprt.noise: unknown key; allowed keys: enabled, noise_magnitude, samples, seed"),
    ({"emprt": {"n_bins": "sturgess"}}, "emprt.n_bins: expected a number of bins (2 or more) or one of sturges, sqrt, rice, scott, freedman_diaconis"),
    ({"emprt": {"n_bins": 1}}, "emprt.n_bins: at least 2 bins are needed"),
    ({"emprt": {"min_bins": 50, "max_bins": 20}}, "emprt: min_bins (50) is larger than max_bins (20)"),
    ({"mprt_invariant_mask": {"tolerance": 1.5}}, "mprt_invariant_mask.tolerance: Input should be less than 1"),
    ({"random_logit": {"enabled": True}, "model": {"name": "resnet34", "num_classes": 1}}, "random_logit.enabled: the random-logit test needs another class"),
])
def test_check_sections_fail_with_their_key_paths(section, message) -> None:
    with pytest.raises(SpecError) as error:
        job([{"name": "lrp"}], **section)
    assert message in str(error.value)
