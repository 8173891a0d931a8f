"""The metrics on a mask of pixels (the paper's §5 refinement (1)) against numpy, scipy and skimage:
normalization over the mask, skimage's SSIM windows that lie fully inside the mask, MSE and Spearman
over the masked pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import uniform_filter

from benchmark.config.spec import MetricsSpec
from benchmark.metrics import METRICS, MapComparer, Metric, register_metric, unregister_metric
from benchmark.metrics.masked import inside_windows
from benchmark.metrics.ssim import SSIMWindow

from ._metrics_reference import np_spearman
from skimage.metrics import structural_similarity

ALL = MetricsSpec(similarities=["ssim", "mse", "spearman"], normalizations=["second_moment", "max_abs", "none"],
                  absolute=[False, True])


@pytest.fixture
def masked_pair(correlated_pair, np_rng):
    a, b = correlated_pair
    mask = np.zeros(a.shape, bool)
    mask[0, 2:20, 3:30] = True  # a rectangle
    mask[1] = np_rng.random(a.shape[1:]) > 0.15  # scattered holes, a solid block inside
    mask[1, 5:20, 4:25] = True
    mask[2] = True  # everything
    return a, b, mask


def np_masked_normalize(x: np.ndarray, mask: np.ndarray, kind: str) -> np.ndarray:
    x = np.where(mask, x, 0.0)
    if kind == "max_abs":
        return x / np.abs(x[mask]).max()
    if kind == "second_moment":
        return x / np.sqrt(np.mean(x[mask] ** 2))
    return x


def np_masked_ssim(x: np.ndarray, y: np.ndarray, mask: np.ndarray) -> float:
    """skimage's SSIM image (full=True), averaged over the windows whose 7 x 7 pixels are all in the mask."""
    data_range = max(x[mask].max(), y[mask].max()) - min(x[mask].min(), y[mask].min())
    _, windows = structural_similarity(x, y, data_range=data_range, win_size=7, full=True)
    inside = uniform_filter(mask.astype(np.float64), size=7, mode="constant") > 1 - 1e-9
    return float(windows[3:-3, 3:-3][inside[3:-3, 3:-3]].mean())


def test_masked_comparisons_equal_numpy_scipy_and_skimage(masked_pair) -> None:
    a, b, mask = masked_pair
    comparer = MapComparer(ALL)
    values = comparer.compare_masked(torch.from_numpy(a), torch.from_numpy(b), torch.from_numpy(mask)).numpy()
    for k, key in enumerate(comparer.keys):
        for i in range(len(a)):
            x, y, m = a[i], b[i], mask[i]
            if key.absolute:
                x, y = np.abs(x), np.abs(y)
            x, y = np_masked_normalize(x, m, key.normalization), np_masked_normalize(y, m, key.normalization)
            reference = {
                "ssim": lambda: np_masked_ssim(x, y, m),
                "mse": lambda: float(np.mean((x[m] - y[m]) ** 2)),
                "spearman": lambda: np_spearman(x[m], y[m]),
            }[key.metric]()
            assert values[k, i] == pytest.approx(reference, rel=1e-9, abs=1e-12), (key, i)


def test_a_full_mask_gives_the_plain_comparison(correlated_pair) -> None:
    a, b = (torch.from_numpy(x) for x in correlated_pair)
    comparer = MapComparer(ALL)
    masked = comparer.compare_masked(a, b, torch.ones_like(a, dtype=torch.bool))
    plain, _ = comparer.compare(comparer.prepare(a), b)
    torch.testing.assert_close(masked, plain, rtol=1e-12, atol=1e-12)


def test_unmasked_pixels_do_not_matter(masked_pair) -> None:
    a, b, mask = (torch.from_numpy(x) for x in masked_pair)
    comparer = MapComparer(ALL)
    changed = torch.where(mask, b, torch.full_like(b, 1e6))
    torch.testing.assert_close(comparer.compare_masked(a, changed, mask), comparer.compare_masked(a, b, mask))


def test_masks_that_leave_nothing_to_compare_give_nan(correlated_pair) -> None:
    a, b = (torch.from_numpy(x) for x in correlated_pair)
    mask = torch.zeros_like(a, dtype=torch.bool)
    mask[0, ::2, ::2] = True  # pixels, but no 7 x 7 window inside
    mask[1, 4, 4] = True  # a single pixel
    values = MapComparer(ALL).compare_masked(a, b, mask)
    keys = MapComparer(ALL).keys
    for k, key in enumerate(keys):
        assert torch.isnan(values[k, 2])  # empty mask
        assert torch.isnan(values[k, 1]) == (key.metric in ("ssim", "spearman"))  # one pixel: only an MSE
        assert torch.isnan(values[k, 0]) == (key.metric == "ssim")  # no window: no SSIM
    assert not inside_windows(mask, SSIMWindow(7))[0].any()


def test_a_metric_without_a_masked_version_is_refused(correlated_pair) -> None:
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Plain(Metric):
        def compare(self, reference, prepared, maps):
            return (reference - maps).abs().mean(dim=(-2, -1)), None

    register_metric(Plain("l1_toy", "L1", better="higher"))
    try:
        assert not METRICS["l1_toy"].masked and METRICS["ssim"].masked
        comparer = MapComparer(MetricsSpec(similarities=["ssim", "l1_toy"], normalizations=["none"], absolute=[False]))
        a, b = (torch.from_numpy(x) for x in correlated_pair)
        with pytest.raises(ValueError, match="no masked version of the metric"):
            comparer.compare_masked(a, b, torch.ones_like(a, dtype=torch.bool))
    finally:
        unregister_metric("l1_toy")
