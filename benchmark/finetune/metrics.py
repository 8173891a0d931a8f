"""Average precision of multi-label scores, as scikit-learn defines it (sklearn is not a dependency).

AP = Σₙ (Rₙ − Rₙ₋₁) Pₙ over the distinct score thresholds, highest first: tied scores form one
threshold (no interpolation, no arbitrary tie order). mAP is the mean over the classes that
have at least one positive example.
"""

from __future__ import annotations

import numpy as np


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: ``scores`` [N] (higher = more confident), ``labels`` [N] in {0, 1}; NaN without positives."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1) > 0.5
    if not labels.any():
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]
    true_positives = np.cumsum(labels)
    # the last position of each run of equal scores is one threshold
    thresholds = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    tp = true_positives[thresholds]
    precision = tp / (thresholds + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def per_class_average_precision(scores: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """AP of every class: ``scores`` and ``targets`` [N, C]; NaN for classes without positives."""
    scores, targets = np.asarray(scores), np.asarray(targets)
    return np.array([average_precision(scores[:, c], targets[:, c]) for c in range(scores.shape[1])])


def mean_average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean AP over the classes with at least one positive; NaN when no class has one."""
    per_class = per_class_average_precision(scores, targets)
    present = ~np.isnan(per_class)
    return float(per_class[present].mean()) if present.any() else float("nan")
