"""Logit preservation (§4.2, Fig. 5), the skip/residual split (§4.2, Fig. 7) and the kept-layer
explanation (§4.1, Fig. 4) on tiny models, against scipy and against plain LRP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from zennit.composites import LayerMapComposite
from zennit.rules import Epsilon

from ..attribution.attribution_models import (
    NUM_CLASSES,
    VGGLike,
    keys,
    make_bundle,
    make_inputs,
    make_targets,
    seeded,
    tiny_efficientnet,
)
from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.lrp import base_layer_map
from benchmark.config.spec import KeptActivationSpec, LRPSpec, MetricsSpec, SkipPathSpec
from benchmark.experiments.kept_features import KeptFeatureExplanation, layer_relevance
from benchmark.results.maps import decode_map
from benchmark.experiments.logits import LogitPreservation, pearson, spearman_rows
from benchmark.experiments.skip_path import SkipPathDecomposition, residual_sum
from benchmark.models.randomization import Randomizer, build_plan

from .walking import as_written, make_batch, observe_batch

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture
def resnet18():
    import torchvision

    module = seeded(lambda: torchvision.models.resnet18(weights=None, num_classes=NUM_CLASSES))
    return make_bundle(module, "resnet", "resnet18")


def single_layer_plan(module, layers: list[str]):
    return build_plan(module, mode="independent", head="fc", boundary="x", every=1, max_boundaries=None, layers=layers)


def state_of(module) -> dict[str, torch.Tensor]:
    return {name: tensor.clone() for name, tensor in module.state_dict().items()}


def assert_restored(module, before: dict[str, torch.Tensor]) -> None:
    for name, tensor in module.state_dict().items():
        assert torch.equal(tensor, before[name]), name


# ------------------------------------------------------------------------------------------
# Logits
# ------------------------------------------------------------------------------------------


def test_row_correlations_equal_scipy() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(4, 50, generator=generator, dtype=torch.float64)
    b = a + 0.7 * torch.randn(4, 50, generator=generator, dtype=torch.float64)
    b[2, :10] = b[2, 0]  # ties
    for row in range(4):
        assert pearson(a, b)[row].item() == pytest.approx(stats.pearsonr(a[row], b[row])[0], rel=1e-9)
        assert spearman_rows(a, b)[row].item() == pytest.approx(stats.spearmanr(a[row], b[row])[0], rel=1e-9)
    assert torch.isnan(pearson(a, torch.ones_like(a))).all()


def test_logit_preservation_per_seed_and_layer(resnet18) -> None:
    module = resnet18.module
    plan = single_layer_plan(module, ["layer4.1.conv2", "fc"])
    experiment = LogitPreservation(plan, [0, 1])
    inputs = make_inputs(resnet18)
    before = state_of(module)
    with torch.no_grad():
        reference = module(inputs)
    # the arrays of image 2 are saved (runtime.save_maps)
    tables = observe_batch(experiment, resnet18, plan, [0, 1], make_batch(inputs, reference.argmax(1), saved=[2]))
    assert_restored(module, before)
    # by hand: randomize layer4.1.conv2 with seed 1 and correlate
    randomizer = Randomizer(module)
    randomizer.randomize(["layer4.1.conv2"], 1)
    with torch.no_grad():
        after = module(inputs)
    randomizer.restore()
    rows = as_written(tables["logits"], "logits", shard=2).to_pandas()
    assert len(rows) == 12 and rows[rows.stage == 2].layers.map(list).eq([["fc"]] * 6).all()
    assert (rows.shard == 2).all()
    for image in range(3):
        row = rows[(rows.seed == 1) & (rows.stage == 1) & (rows.image_id == keys(3)[image])].iloc[0]
        assert row.pearson == pytest.approx(stats.pearsonr(reference[image], after[image])[0], rel=1e-6)
        assert row.spearman == pytest.approx(stats.spearmanr(reference[image], after[image])[0], rel=1e-6)
    # the logit vectors of the saved image only, before and after, for the Fig. 5 scatter
    with_vectors = rows[rows.logits_before.notna()]
    assert sorted(with_vectors.image_id) == [keys(3)[2]] * 4
    row = with_vectors[(with_vectors.seed == 1) & (with_vectors.stage == 1)].iloc[0]
    assert np.allclose(row.logits_before, reference[2].numpy(), atol=1e-6)
    assert np.allclose(row.logits_after, after[2].numpy(), atol=1e-6)


# ------------------------------------------------------------------------------------------
# Skip vs residual
# ------------------------------------------------------------------------------------------


def skip_experiment(model, block: str, **settings) -> SkipPathDecomposition:
    methods = [
        build_method(LRPSpec(name="lrp", composite="adaptive_beta"), model),
        build_method(LRPSpec(name="lrp", composite="epsilon"), model),
    ]
    spec = SkipPathSpec(enabled=True, block=block, **settings)
    return SkipPathDecomposition(spec, MetricsSpec(), model, methods, "independent", 64)


@pytest.mark.parametrize("case", ["resnet", "efficientnet"])
def test_skip_and_residual_parts_add_up_to_the_lrp_explanation(case: str, resnet18) -> None:
    model, block = (resnet18, "layer4.1") if case == "resnet" else (tiny_efficientnet(), "_blocks.4")
    experiment = skip_experiment(model, block)
    inputs, targets = make_inputs(model), make_targets()
    for method in experiment.methods:
        skip, residual = experiment.components(method, inputs, targets)
        full = method.attribute(model, inputs, targets, AttributionContext(keys(3)))
        torch.testing.assert_close(skip + residual, full, rtol=1e-4, atol=1e-5 * full.abs().max().item())
        assert skip.abs().sum() > 0 and residual.abs().sum() > 0


def test_skip_path_rows_shares_and_maps(resnet18) -> None:
    experiment = skip_experiment(resnet18, "layer4.1", save_maps=True, map_size=4)
    plan = single_layer_plan(resnet18.module, ["layer4.1.conv2"])
    inputs, targets = make_inputs(resnet18), make_targets()
    before = state_of(resnet18.module)
    unnormalized = inputs * resnet18.std + resnet18.mean
    tables = observe_batch(experiment, resnet18, plan, [0, 3], make_batch(inputs, targets, pixels=unnormalized))
    assert_restored(resnet18.module, before)
    as_written(tables["skip_path"], "skip_path")
    as_written(tables["maps"], "maps")
    rows = tables["skip_path"].to_pandas()
    assert len(rows) == 3 * 2 * 3 * 3  # states (trained + 2 seeds) × methods × components × images
    parts = rows[rows.component != "total"].fillna({"seed": -1}).groupby(["image_id", "method", "stage", "seed"]).share
    np.testing.assert_allclose(parts.sum(), 1.0, rtol=1e-4)
    assert (parts.count() == 2).all() and (rows[rows.component == "total"].share == 1).all()
    assert rows[rows.stage == 0].ssim.isna().all() and rows[rows.stage == 1].ssim.notna().all()
    every = tables["maps"].to_pandas()
    assert (every.experiment == "skip_path").all()
    # the input images once, unnormalized and at the maps' size, for the figure's first column
    images = every[every.kind == "input"]
    assert len(images) == 3 and images["shape"].map(list).eq([[3, 4, 4]] * 3).all()
    pixels = decode_map(images["values"].iloc[0], [3, 4, 4], images.scale.iloc[0])
    expected = torch.nn.functional.adaptive_avg_pool2d(unnormalized[:1], 4)[0]
    np.testing.assert_allclose(pixels, expected.numpy(), atol=2e-3)
    maps = every[every.kind == "map"]
    assert len(maps) == len(rows) and maps["shape"].map(list).eq([[4, 4]] * len(maps)).all()
    assert (maps.target.to_numpy() == np.tile(targets.numpy(), len(maps) // 3)).all()  # the class explained
    # decoded (scaled float16) maps: skip + residual = total, per image, method and state
    decoded = maps.assign(array=[decode_map(v, s, c) for v, s, c in zip(maps["values"], maps["shape"], maps.scale)])
    for _, group in decoded.fillna({"seed": -1}).groupby(["image_id", "method", "stage", "seed"]):
        part = {row.component: row.array for row in group.itertuples()}
        scale = np.abs(part["total"]).max()
        np.testing.assert_allclose(part["skip"] + part["residual"], part["total"], atol=2e-3 * scale)


def test_blocks_without_a_residual_sum_are_refused(resnet18) -> None:
    assert residual_sum(resnet18, "layer3.0") == "layer3.0.canonizer_sum"  # downsample skip: still a sum
    with pytest.raises(ValueError, match="has no residual sum"):
        residual_sum(resnet18, "layer3")
    with pytest.raises(ValueError, match="not a module"):
        residual_sum(resnet18, "layer9.9")
    efficientnet = tiny_efficientnet()
    with pytest.raises(ValueError, match="has no residual sum"):
        residual_sum(efficientnet, "_blocks.0")  # 8 → 8 channels but no identity skip (first block of a stage)
    with pytest.raises(ValueError, match="needs at least one 'lrp' method"):
        SkipPathDecomposition(SkipPathSpec(enabled=True), MetricsSpec(), resnet18, [], "top_down", 8)


# ------------------------------------------------------------------------------------------
# Kept-layer explanation
# ------------------------------------------------------------------------------------------


@pytest.fixture
def bias_free_vgg():
    return make_bundle(seeded(lambda: VGGLike(batch_norm=False, bias=False)), "vgg", "bias-free")


def test_kept_layer_relevance_is_lrp_of_the_truncated_network(bias_free_vgg) -> None:
    model = bias_free_vgg
    inputs = make_inputs(model)
    method = build_method(LRPSpec(name="lrp", composite="epsilon", epsilon=1e-9), model)
    relevance = layer_relevance(model, method, inputs, "features.4", chunk_size=2)
    truncated = model.module.features[:5]
    with torch.no_grad():
        activation = truncated(inputs)
    # conserves: input relevance sums to the sum of the kept activations
    torch.testing.assert_close(relevance.sum(dim=(1, 2, 3)), activation.sum(dim=(1, 2, 3)), rtol=1e-4, atol=1e-5)
    # equals zennit's LRP of the truncated network, seeded with the activations themselves
    composite = LayerMapComposite(base_layer_map() + [(torch.nn.Conv2d, Epsilon(1e-9))])
    x = inputs.clone().requires_grad_(True)
    with composite.context(truncated):
        out = truncated(x)
        (expected,) = torch.autograd.grad(out, x, grad_outputs=out.detach())
    torch.testing.assert_close(relevance, expected, rtol=1e-4, atol=1e-6)


def test_kept_features_rows(bias_free_vgg) -> None:
    model = bias_free_vgg
    module = model.module
    plan = build_plan(module, mode="split", head="classifier.3", boundary="x", every=1, max_boundaries=None,
                      split_after="features.4")
    methods = [
        build_method(LRPSpec(name="lrp", composite="vgg_paper"), model),
        build_method(LRPSpec(name="lrp", composite="epsilon"), model),
    ]
    metrics = MetricsSpec(normalizations=["second_moment"], absolute=[False])
    spec = KeptActivationSpec(enabled=True, save_maps=True)
    experiment = KeptFeatureExplanation(spec, metrics, model, methods, plan.mode, 64, "features.4")
    inputs, targets = make_inputs(model), make_targets()
    before = state_of(module)
    tables = observe_batch(experiment, model, plan, [0, 1, 2], make_batch(inputs, targets))
    assert_restored(module, before)
    as_written(tables["kept_features"], "kept_features")
    as_written(tables["maps"], "maps")
    rows = tables["kept_features"].to_pandas()
    assert len(rows) == 4 * 2 * 3 * 3  # (trained + 3 seeds) × methods × metrics × images
    assert rows[rows.stage == 0].seed.isna().all() and set(rows[rows.stage == 1].seed) == {0, 1, 2}
    assert (rows.layer == "features.4").all()
    every = tables["maps"].to_pandas()
    assert (every[every.kind == "input"].image_id.tolist() == keys(3)) and every[every.kind == "input"].target.isna().all()
    maps = every[every.kind == "map"]
    assert set(maps.component) == {"kept", "output"} and len(maps) == (2 + 2 * 4) * 3
    assert maps[maps.component == "kept"].target.isna().all()  # the kept layer's activations: no class
    assert (maps[maps.component == "output"].target.to_numpy() == np.tile(targets.numpy(), 8)).all()
    with pytest.raises(ValueError, match="not a module"):
        KeptFeatureExplanation(KeptActivationSpec(enabled=True, layer="nope"), metrics, model, methods, plan.mode, 8, None)
