"""Statistics over images: mean, standard deviation, count and a seeded bootstrap CI of the mean.

Images are the independent units of every experiment, so every aggregate is a statistic over
images (seeds are averaged per image first). The bootstrap is vectorised: one matrix of
resampled image indices per image count, turned into a matrix of resample counts ``W[b, i]``
(how often image i is in resample b); the resample means of every group at once are then
``(values @ W.T) / (finite @ W.T)``, which also ignores NaN values (a Spearman correlation of a
constant map) exactly as ``nanmean`` of the resampled values would. Groups with the same images
share the resamples (a paired bootstrap), which keeps comparisons between methods honest.
The CI is the percentile interval (2.5 %, 97.5 % for 95 %).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

# Most resample-count cells held at once (resamples x images), bounding memory for large runs.
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class BootstrapSettings:
    resamples: int = 2000
    confidence: float = 0.95
    seed: int = 0

    def describe(self) -> dict:
        return {"resamples": self.resamples, "confidence": self.confidence, "seed": self.seed, "method": "percentile"}


def resample_counts(indices: np.ndarray, n: int) -> np.ndarray:
    """``indices[b, j]`` (resample b's j-th draw) -> ``counts[b, i]`` (how often image i was drawn)."""
    rows = indices.shape[0]
    flat = (indices + n * np.arange(rows)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(np.float64)


def bootstrap_means(values: np.ndarray, settings: BootstrapSettings) -> np.ndarray:
    """Resample means ``[groups, resamples]`` of ``values[groups, images]`` (NaN = no value)."""
    groups, n = values.shape
    finite = np.isfinite(values)
    filled = np.where(finite, values, 0.0)
    weights = finite.astype(np.float64)
    rng = np.random.default_rng([settings.seed, n])  # the same resamples whatever else is aggregated
    block = max(1, _BLOCK_CELLS // max(n, 1))
    means = np.empty((groups, settings.resamples))
    for start in range(0, settings.resamples, block):
        rows = min(block, settings.resamples - start)
        counts = resample_counts(rng.integers(0, n, size=(rows, n)), n)
        with np.errstate(invalid="ignore", divide="ignore"):
            means[:, start : start + rows] = (filled @ counts.T) / (weights @ counts.T)
    return means


def bootstrap_ci(values: np.ndarray, settings: BootstrapSettings) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CI of the nan-aware mean over images, per group (row)."""
    groups = values.shape[0]
    low = np.full(groups, np.nan)
    high = np.full(groups, np.nan)
    usable = np.isfinite(values).any(axis=1)
    if values.shape[1] == 0 or not usable.any():
        return low, high
    means = bootstrap_means(values[usable], settings)
    tail = (1 - settings.confidence) / 2 * 100
    with np.errstate(invalid="ignore"):
        bounds = np.nanpercentile(means, [tail, 100 - tail], axis=1)
    low[usable], high[usable] = bounds
    return low, high


def summarize(values: np.ndarray, settings: BootstrapSettings) -> dict[str, np.ndarray]:
    """mean, std (ddof 1), count of finite values and the bootstrap CI, per row of ``values``."""
    finite = np.isfinite(values)
    count = finite.sum(axis=1)
    total = np.where(finite, values, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(count > 0, total / np.maximum(count, 1), np.nan)
        squares = np.where(finite, (values - mean[:, None]) ** 2, 0.0).sum(axis=1)
        std = np.where(count > 1, np.sqrt(squares / np.maximum(count - 1, 1)), np.nan)
    low, high = bootstrap_ci(values, settings)
    return {"mean": mean, "std": std, "count": count.astype(np.int64), "ci_low": low, "ci_high": high}


def image_stats(frame: pd.DataFrame, keys: list[str], settings: BootstrapSettings, value: str = "value") -> pd.DataFrame:
    """One row per group of ``keys``: the statistics of ``value`` over the group's images.

    ``frame`` has one row per group x image (``image_id``); a NaN value counts in ``nans``, not in
    ``count``. Groups are bootstrapped together, over the union of the images.
    """
    columns = keys + ["mean", "std", "count", "nans", "ci_low", "ci_high"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    wide = frame.set_index(keys + ["image_id"])[value].astype(np.float64).unstack("image_id")
    matrix = wide.to_numpy(dtype=np.float64)
    present = frame.groupby(keys, sort=True, dropna=False).size().reindex(wide.index).to_numpy()
    result = wide.index.to_frame(index=False)
    for name, column in summarize(matrix, settings).items():
        result[name] = column
    result["nans"] = (present - result["count"]).astype(np.int64)
    return result[columns]


def kendall_tau(first: np.ndarray, second: np.ndarray) -> tuple[float, float]:
    """Kendall's tau-b between two rankings of the same items, and its two-sided p-value;
    NaN when undefined (fewer than two items, or a ranking without any order)."""
    if len(first) < 2:
        return float("nan"), float("nan")
    result = scipy_stats.kendalltau(first, second)
    return float(result.statistic), float(result.pvalue)


def rank(scores: np.ndarray, better: str) -> np.ndarray:
    """1 = best (the lowest or the highest score, as ``better`` says); ties share their average rank."""
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', got {better!r}")
    return scipy_stats.rankdata(scores if better == "lower" else -np.asarray(scores), method="average")
