"""SmoothGrad against Captum's NoiseTunnel(Saliency, nt_type='smoothgrad').

Captum draws its noise from torch's global generator, ours is a pure function of the image key,
so the two cannot see the same noise by construction. What the tests prove, together:

1. exact: our map equals the mean of Captum's ``Saliency(abs=False)`` over the very noisy inputs
   our method used (aggregation, weights, targets, chunking are right);
2. the noise we add is i.i.d. N(0, σₙ²) with σₙ = noise_level · (max − min of image n);
3. statistical: with many samples our map converges to Captum's NoiseTunnel map with Captum's
   stdevs set to that σₙ, closer than a 20 % error in σ would allow (the noise *means* the same);
4. an image's map does not depend on the batch it is in or on the chunk size.
"""

from __future__ import annotations

import pytest
import torch
from captum.attr import NoiseTunnel, Saliency

from .attribution_models import keys, make_inputs, make_targets
from benchmark.attribution import AttributionContext, build_method
from benchmark.attribution.paths import GaussianCloud
from benchmark.config.spec import SmoothGradSpec

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def smoothgrad(model, inputs, targets, image_keys, samples, noise_level=0.1, seed=0, chunk_size=64):
    spec = SmoothGradSpec(name="smoothgrad", samples=samples, noise_level=noise_level, seed=seed)
    ctx = AttributionContext(image_keys=image_keys, chunk_size=chunk_size)
    return build_method(spec, model).attribute(model, inputs, targets, ctx)


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    return (actual - expected).flatten(1).norm(dim=1) / expected.flatten(1).norm(dim=1)


@pytest.mark.parametrize("model_name", ["tiny", "resnet18"])
def test_equals_mean_captum_saliency_over_the_same_noisy_inputs(model_name: str, request) -> None:
    model = request.getfixturevalue(model_name)
    inputs, targets, samples = make_inputs(model), make_targets(), 5
    ours = smoothgrad(model, inputs, targets, keys(3), samples, chunk_size=4)

    noisy = GaussianCloud(inputs, keys(3), samples, 0.1, seed=0).points(slice(0, samples), slice(0, 3))
    saliency = Saliency(model.module)
    per_sample = [saliency.attribute(noisy[k].clone(), target=targets, abs=False) for k in range(samples)]
    expected = torch.stack(per_sample).mean(0)
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


def test_noise_is_iid_gaussian_with_the_spec_scale(tiny) -> None:
    inputs, samples, noise_level = make_inputs(tiny, size=32), 64, 0.2
    cloud = GaussianCloud(inputs, keys(3), samples, noise_level, seed=3)
    noise = cloud.points(slice(0, samples), slice(0, 3)) - inputs.unsqueeze(0)  # [k, n, C, H, W]
    flat = inputs.flatten(1)
    sigma = noise_level * (flat.amax(1) - flat.amin(1))
    standardized = noise / sigma.view(1, 3, 1, 1, 1)
    per_image = standardized.transpose(0, 1).flatten(1)  # 64 · 3 · 32 · 32 values per image
    torch.testing.assert_close(per_image.mean(1), torch.zeros(3), atol=0.01, rtol=0)
    torch.testing.assert_close(per_image.std(1), torch.ones(3), atol=0.01, rtol=0)
    # different samples of one image are uncorrelated: the 2016 pairwise correlations of 3072
    # values each scatter around 0 with the standard error 1/sqrt(3072) of independent samples
    rows = standardized[:, 0].flatten(1)
    pairs = torch.triu_indices(samples, samples, offset=1)
    correlation = torch.corrcoef(rows)[pairs[0], pairs[1]]
    standard_error = rows.shape[1] ** -0.5
    assert correlation.mean().abs() < 0.2 * standard_error
    assert correlation.pow(2).mean().sqrt() < 1.2 * standard_error


def test_converges_to_captum_noise_tunnel(tiny) -> None:
    inputs, targets, samples = make_inputs(tiny, size=16), make_targets(), 1000
    torch.manual_seed(0)
    tunnel = NoiseTunnel(Saliency(tiny.module))
    expected = []
    for i in range(3):  # Captum's stdevs are per input tensor, so one image at a time
        image = inputs[i : i + 1]
        sigma = 0.1 * (image.max() - image.min()).item()
        expected.append(
            tunnel.attribute(
                image.clone(), nt_type="smoothgrad", nt_samples=samples, nt_samples_batch_size=500,
                stdevs=sigma, target=targets[i : i + 1], abs=False,
            )
        )
    expected = torch.cat(expected)
    ours = smoothgrad(tiny, inputs, targets, keys(3), samples, noise_level=0.1, chunk_size=1500)
    assert relative_error(ours, expected).max() < 0.05
    wrong_scale = smoothgrad(tiny, inputs, targets, keys(3), samples, noise_level=0.12, chunk_size=1500)
    assert relative_error(wrong_scale, expected).min() > 0.05  # the test can tell a 20 % error in sigma


def test_map_of_an_image_does_not_depend_on_its_batch_or_the_chunk_size(tiny) -> None:
    inputs, targets, image_keys = make_inputs(tiny, n=4), make_targets(4), keys(4)
    full = smoothgrad(tiny, inputs, targets, image_keys, samples=6, chunk_size=64)
    order = [3, 1]
    subset = smoothgrad(tiny, inputs[order], targets[order], [image_keys[i] for i in order], samples=6, chunk_size=5)
    torch.testing.assert_close(subset, full[order], rtol=1e-5, atol=1e-6)
    one_by_one = smoothgrad(tiny, inputs, targets, image_keys, samples=6, chunk_size=1)
    torch.testing.assert_close(one_by_one, full, rtol=1e-5, atol=1e-6)


def test_seed_changes_the_noise(tiny) -> None:
    inputs, targets = make_inputs(tiny), make_targets()
    first = smoothgrad(tiny, inputs, targets, keys(3), samples=4, seed=0)
    again = smoothgrad(tiny, inputs, targets, keys(3), samples=4, seed=0)
    other = smoothgrad(tiny, inputs, targets, keys(3), samples=4, seed=1)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


def test_needs_one_key_per_image(tiny) -> None:
    with pytest.raises(ValueError, match="image keys"):
        smoothgrad(tiny, make_inputs(tiny), make_targets(), keys(2), samples=2)
