from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.config.spec import MetricsSpec, SSIMSpec
from benchmark.metrics import (
    ComparisonKey,
    MapComparer,
    SSIMWindow,
    mse,
    mse_noise_bound,
    normalize_maps,
    resolve_data_range,
    spearman,
    ssim,
    ssim_noise_bound,
)


def _maps(rng: np.random.Generator, n: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    ref = rng.normal(size=(n, 20, 26))
    ref[:, :, :8] = np.maximum(ref[:, :, :8], 0)  # ties at zero
    other = 0.6 * ref + rng.normal(size=ref.shape) + 0.2
    return torch.from_numpy(ref), torch.from_numpy(other)


def test_keys_order() -> None:
    spec = MetricsSpec(similarities=["spearman", "ssim"], normalizations=["none", "max_abs"], absolute=[True, False])
    assert MapComparer(spec).keys == [
        ComparisonKey("spearman", "none", True),
        ComparisonKey("ssim", "none", True),
        ComparisonKey("spearman", "max_abs", True),
        ComparisonKey("ssim", "max_abs", True),
        ComparisonKey("spearman", "none", False),
        ComparisonKey("ssim", "none", False),
        ComparisonKey("spearman", "max_abs", False),
        ComparisonKey("ssim", "max_abs", False),
    ]


@pytest.mark.parametrize(
    "ssim_spec",
    [SSIMSpec(), SSIMSpec(gaussian_weights=True, win_size=None, data_range="reference"), SSIMSpec(win_size=5, data_range=4.0, k1=0.02)],
    ids=["default", "gaussian-reference", "w5-constant"],
)
def test_compare_equals_the_individual_functions(np_rng: np.random.Generator, ssim_spec: SSIMSpec) -> None:
    spec = MetricsSpec(ssim=ssim_spec)
    comparer = MapComparer(spec)
    ref, other = _maps(np_rng)
    values, bounds = comparer.compare(comparer.prepare(ref), other)
    assert values.shape == bounds.shape == (len(comparer.keys), 3) == (18, 3)
    assert values.dtype == torch.float64
    window = SSIMWindow(ssim_spec.win_size, ssim_spec.gaussian_weights, ssim_spec.sigma, ssim_spec.truncate, ssim_spec.use_sample_covariance)
    for row, key in enumerate(comparer.keys):
        a = normalize_maps(ref.abs() if key.absolute else ref, key.normalization)
        b = normalize_maps(other.abs() if key.absolute else other, key.normalization)
        if key.metric == "ssim":
            dr = resolve_data_range(a, b, ssim_spec.data_range)
            expected = ssim(a, b, dr, window, ssim_spec.k1, ssim_spec.k2)
            expected_bound = ssim_noise_bound(a, b, dr, window, ssim_spec.k2)
        elif key.metric == "mse":
            expected, expected_bound = mse(a, b), mse_noise_bound(a, b)
        else:
            expected, expected_bound = spearman(a, b), torch.full((3,), float("nan"), dtype=torch.float64)
        torch.testing.assert_close(values[row], expected, msg=str(key))
        torch.testing.assert_close(bounds[row], expected_bound, equal_nan=True, msg=str(key))


def test_prepared_reference_is_reused(np_rng: np.random.Generator) -> None:
    comparer = MapComparer(MetricsSpec())
    ref, other = _maps(np_rng)
    prepared = comparer.prepare(ref)
    first = comparer.compare(prepared, other)
    comparer.compare(prepared, other * 3 - 1)  # another stage in between
    second = comparer.compare(prepared, other)
    for x, y in zip(first, second):
        torch.testing.assert_close(x, y, equal_nan=True)


def test_self_comparison(np_rng: np.random.Generator) -> None:
    comparer = MapComparer(MetricsSpec())
    ref, _ = _maps(np_rng)
    values, _ = comparer.compare(comparer.prepare(ref), ref.clone())
    expected = {"ssim": 1.0, "mse": 0.0, "spearman": 1.0}
    for row, key in enumerate(comparer.keys):
        torch.testing.assert_close(values[row], torch.full((3,), expected[key.metric], dtype=torch.float64), msg=str(key))


def test_zero_maps_are_finite_except_spearman(np_rng: np.random.Generator) -> None:
    comparer = MapComparer(MetricsSpec())
    ref, other = _maps(np_rng)
    other[1] = 0.0
    values, bounds = comparer.compare(comparer.prepare(ref), other)
    spearman_rows = [i for i, k in enumerate(comparer.keys) if k.metric == "spearman"]
    other_rows = [i for i, k in enumerate(comparer.keys) if k.metric != "spearman"]
    assert torch.isfinite(values[other_rows]).all() and torch.isfinite(bounds[other_rows]).all()
    assert torch.isnan(values[spearman_rows, 1]).all() and torch.isfinite(values[spearman_rows][:, [0, 2]]).all()


def test_dtype_handling(np_rng: np.random.Generator) -> None:
    ref, other = (x.float() for x in _maps(np_rng))
    exact = MapComparer(MetricsSpec()).compare(MapComparer(MetricsSpec()).prepare(ref), other)[0]
    native = MapComparer(MetricsSpec(), dtype=None)
    fast = native.compare(native.prepare(ref), other)[0]
    assert exact.dtype == torch.float64 and fast.dtype == torch.float32
    torch.testing.assert_close(fast.double(), exact, atol=1e-4, rtol=1e-4)


def test_shape_mismatch_is_an_error(np_rng: np.random.Generator) -> None:
    comparer = MapComparer(MetricsSpec())
    ref, other = _maps(np_rng)
    with pytest.raises(ValueError):
        comparer.compare(comparer.prepare(ref), other[:2])
    with pytest.raises(ValueError):
        comparer.prepare(ref[:, None])


def test_settings_record_everything() -> None:
    spec = MetricsSpec(ssim=SSIMSpec(gaussian_weights=True, win_size=None, data_range="reference"))
    settings = MapComparer(spec).settings()
    json.dumps(settings)
    s = settings["ssim"]
    assert (s["win_size"], s["filter_taps"], s["border_crop"]) == (11, 11, 5)
    assert (s["gaussian_weights"], s["sigma"], s["truncate"], s["k1"], s["k2"]) == (True, 1.5, 3.5, 0.01, 0.03)
    assert s["data_range"] == "reference" and s["use_sample_covariance"] is True
    assert s["covariance_factor"] == pytest.approx(121 / 120)
    assert settings["spearman"]["constant_map"] == "nan"
    assert settings["keys"][0] == ["ssim", "second_moment", False]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_stays_on_device(np_rng: np.random.Generator) -> None:
    comparer = MapComparer(MetricsSpec())
    ref, other = _maps(np_rng)
    cpu = comparer.compare(comparer.prepare(ref), other)
    gpu = comparer.compare(comparer.prepare(ref.cuda()), other.cuda())
    assert all(t.device.type == "cuda" for t in gpu)
    for x, y in zip(cpu, gpu):
        torch.testing.assert_close(y.cpu(), x, equal_nan=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_every_metric_and_bound_of_a_non_finite_map_is_nan(np_rng: np.random.Generator, bad: float) -> None:
    """skimage's SSIM is NaN there, numpy's MSE NaN or inf, scipy's Spearman NaN for a NaN pixel; here
    every metric in every normalization is NaN, on either side, and the other images are untouched."""
    from skimage.metrics import structural_similarity

    comparer = MapComparer(MetricsSpec())
    ref, other = _maps(np_rng)
    clean = comparer.compare(comparer.prepare(ref), other)
    broken_other = other.clone()
    broken_other[1, 3, 3] = bad
    broken_ref = ref.clone()
    broken_ref[1, 0, 0] = bad
    assert np.isnan(structural_similarity(ref[1].numpy(), broken_other[1].numpy(), data_range=2.0))
    for values, bounds in (
        comparer.compare(comparer.prepare(ref), broken_other),
        comparer.compare(comparer.prepare(broken_ref), other),
    ):
        assert torch.isnan(values[:, 1]).all() and torch.isnan(bounds[:, 1]).all()
        torch.testing.assert_close(values[:, [0, 2]], clean[0][:, [0, 2]], equal_nan=True)
    assert torch.isinf(mse(ref, broken_other)[1]) or torch.isnan(mse(ref, broken_other)[1])
