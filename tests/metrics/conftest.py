"""Small random maps for the metric tests: 16-64 px, a few images, fixed seeds."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def np_rng() -> np.random.Generator:
    return np.random.default_rng(20230601)


@pytest.fixture
def correlated_pair(np_rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Three non-square signed maps and a noisy, rescaled, shifted copy of them."""
    a = np_rng.normal(size=(3, 24, 33))
    a[0] = np.cumsum(a[0], axis=1) / 4  # spatial structure, non-zero local means
    b = 0.7 * a + 0.5 * np_rng.normal(size=a.shape) + 0.1
    return a, b
