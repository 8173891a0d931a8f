"""Quadrature rules for the integrated-gradients path integral ∫₀¹ g(α) dα ≈ Σₖ wₖ g(αₖ).

Names follow Captum's ``method=`` argument. One deliberate difference: Captum's
'riemann_trapezoid' puts its n nodes at linspace(0, 1, n) but weights them 1/n (halved at the
ends), so its weights sum to (n−1)/n and it underestimates every integral by 1/n. Ours is the
trapezoid rule on those nodes (spacing 1/(n−1)), whose weights sum to one; IG completeness holds.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Rule = Callable[[int], tuple[np.ndarray, np.ndarray]]


def _riemann(offset: float) -> Rule:
    """Equal weights 1/n at the nodes (k + offset)/n: left 0, middle 1/2, right 1."""

    def rule(n: int) -> tuple[np.ndarray, np.ndarray]:
        return (np.arange(n, dtype=np.float64) + offset) / n, np.full(n, 1.0 / n)

    return rule


def _trapezoid(n: int) -> tuple[np.ndarray, np.ndarray]:
    if n < 2:
        raise ValueError("the trapezoid rule needs at least 2 steps")
    weights = np.full(n, 1.0 / (n - 1))
    weights[[0, -1]] /= 2
    return np.linspace(0.0, 1.0, n), weights


def _gauss_legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.legendre.leggauss(n)  # on [-1, 1]
    return 0.5 * (nodes + 1.0), 0.5 * weights


RULES: dict[str, Rule] = {
    "riemann_left": _riemann(0.0),
    "riemann_middle": _riemann(0.5),
    "riemann_right": _riemann(1.0),
    "riemann_trapezoid": _trapezoid,
    "gausslegendre": _gauss_legendre,
}


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes α ∈ [0, 1] and weights (float64, summing to one) of ``rule`` with ``steps`` nodes."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    try:
        return RULES[rule](steps)
    except KeyError:
        raise ValueError(f"unknown quadrature rule '{rule}'; allowed: {', '.join(RULES)}") from None
