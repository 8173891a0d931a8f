from __future__ import annotations

import numpy as np
import pytest
import torch

from ._metrics_reference import np_normalize
from benchmark.metrics import normalize_maps


@pytest.mark.parametrize("kind", ["second_moment", "max_abs", "none"])
def test_matches_numpy_formula_per_image(np_rng: np.random.Generator, kind: str) -> None:
    maps = np_rng.normal(size=(4, 16, 20)) * np.array([1e-6, 1.0, 3e2, 1e5])[:, None, None]
    out = normalize_maps(torch.from_numpy(maps), kind).numpy()
    for i in range(len(maps)):  # per image: each image's result is independent of the others
        np.testing.assert_allclose(out[i], np_normalize(maps[i], kind), rtol=1e-12)


def test_per_image_not_per_batch(np_rng: np.random.Generator) -> None:
    maps = torch.from_numpy(np_rng.normal(size=(3, 16, 16)))
    alone = normalize_maps(maps[1:2] * 1.0, "second_moment")
    in_batch = normalize_maps(torch.cat([maps[:1] * 1e3, maps[1:]]), "second_moment")[1:2]
    torch.testing.assert_close(alone, in_batch)


def test_second_moment_is_one(np_rng: np.random.Generator) -> None:
    out = normalize_maps(torch.from_numpy(np_rng.exponential(size=(2, 17, 23))), "second_moment")
    torch.testing.assert_close(out.square().mean(dim=(-2, -1)), torch.ones(2, dtype=out.dtype))


@pytest.mark.parametrize("kind", ["second_moment", "max_abs", "none"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_zero_map_stays_zero(kind: str, dtype: torch.dtype) -> None:
    maps = torch.zeros(2, 16, 16, dtype=dtype)
    maps[1, 3, 4] = 2.0
    out = normalize_maps(maps, kind)
    assert torch.isfinite(out).all()
    assert (out[0] == 0).all()
    assert out.dtype == dtype


def test_tiny_maps_do_not_underflow() -> None:
    maps = torch.full((1, 16, 16), 1e-30, dtype=torch.float32)
    maps[0, 0, 0] = -3e-30
    out = normalize_maps(maps, "second_moment")
    torch.testing.assert_close(out.square().mean(), torch.tensor(1.0))


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        normalize_maps(torch.zeros(2, 3, 8, 8), "none")
    with pytest.raises(ValueError):
        normalize_maps(torch.zeros(2, 8, 8), "std")
    with pytest.raises(TypeError):
        normalize_maps(torch.zeros(2, 8, 8, dtype=torch.int64), "none")
