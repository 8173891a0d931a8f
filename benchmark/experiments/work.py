"""How much work a model state is, per image (DESIGN §10): the passes each method needs, the
occlusion forwards, and what one randomized state costs next to the trained one. ``benchmark
bench`` counts passes with it; the progress of a run weighs each reported state with it.
"""

from __future__ import annotations

import math

from ..attribution import AttributionMethod
from ..config.spec import JobSpec


def passes_per_state(methods: list[AttributionMethod]) -> int:
    """Forward+backward passes per image to explain one model state with every method."""
    shared: set[str] = set()
    total = 0
    for method in methods:
        passes = method.passes()
        if passes.shared is not None:
            if passes.shared in shared:
                continue
            shared.add(passes.shared)
        total += passes.backward
    return total


def occlusion_forwards(spec: JobSpec, methods: int, image_size: int) -> int:
    """Forward passes per image of the occlusion curves: f0 once per kernel, then every step that
    still occludes a new tile (beyond all tiles the curve is flat and not recomputed)."""
    if not spec.occlusion.enabled:
        return 0
    total = 0
    for kernel in spec.occlusion.kernels:
        tiles = math.ceil(image_size / kernel) ** 2
        total += 1 + methods * min(spec.occlusion.steps, tiles)
    return total


def state_costs(spec: JobSpec, methods: list[AttributionMethod]) -> tuple[float, float]:
    """Work per image of the trained model state and of one randomized state, in forward-pass
    equivalents (a backward pass counted as two forwards): what the progress estimate weighs
    each reported state with. The trained state also draws the occlusion curves, so it is worth
    several randomized states."""
    explain = 3 * passes_per_state(methods)
    lrp = sum(method.spec.name == "lrp" for method in methods)
    experiments = 6 * lrp * spec.skip_path.enabled + 3 * lrp * spec.kept_activation_explanation.enabled
    trained = 1 + explain + occlusion_forwards(spec, len(methods), spec.dataset.crop) + experiments
    randomized = explain * spec.randomization.enabled + experiments + int(spec.logits.enabled)
    randomized += int(spec.randomization.target == "own_prediction")
    return float(trained), float(max(randomized, 1))


def explanation_share(spec: JobSpec, methods: list[AttributionMethod]) -> float:
    """The part of the trained state's work that explains it (the rest: occlusion and the
    experiments' own passes)."""
    trained, _ = state_costs(spec, methods)
    return (1 + 3 * passes_per_state(methods)) / trained
