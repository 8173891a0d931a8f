"""Which modules each randomization stage touches (DESIGN §3, supplement A.1).

A plan is computed from module names alone, so it can be listed, tested and written to the
manifest before any weights exist. Only weight layers (Conv, Linear) are randomized, plus
BatchNorm when asked to reset it; boundaries are matched among the weight layers.

Top-down cascading walks the modules in reverse definition order: stage 1 is everything down
to and including the head; each later stage continues down to and including the next
boundary (every k-th match of the boundary pattern), until ``max_boundaries`` matches or the
last boundary that exists. When that last boundary is not a multiple of k, a final partial
stage (fewer than k boundaries) reaches it, so the plan always ends where it says it does
(DenseNet-121, every 3rd of 58: stages at 3, 6, …, 57 and a last one at 58, which randomizes
the first dense layer); the plan's notes say so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from torch import nn

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
NORM_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@dataclass(frozen=True)
class Stage:
    """One randomization stage: ``modules`` are randomized *at this stage* (not before)."""

    index: int
    modules: tuple[str, ...]
    cumulative: bool  # True: every earlier stage stays randomized (cascading)


@dataclass(frozen=True)
class RandomizationPlan:
    mode: str
    stages: tuple[Stage, ...]
    boundary_matches: int = 0  # how many boundary modules the model has
    boundaries_used: int = 0  # how many of them the plan reached
    requested_boundaries: int | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    rule: dict = field(default_factory=dict, compare=False)  # the rule used and where each value came from

    def modules_at(self, stage_index: int) -> tuple[str, ...]:
        """All modules randomized while stage ``stage_index`` is applied."""
        stage = self.stages[stage_index - 1]
        if not stage.cumulative:
            return stage.modules
        return tuple(name for s in self.stages[:stage_index] for name in s.modules)

    def describe(self) -> dict:
        return {
            "mode": self.mode,
            "stages": [{"stage": s.index, "modules": list(s.modules)} for s in self.stages],
            "boundary_matches": self.boundary_matches,
            "boundaries_used": self.boundaries_used,
            "requested_boundaries": self.requested_boundaries,
            "notes": list(self.notes),
            **({"rule": self.rule} if self.rule else {}),
        }


def classifier_head(model: nn.Module) -> str:
    """The generic head: the last ``nn.Linear`` in definition order (else the last weight layer)."""
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if linear:
        return linear[-1]
    weights = [name for name, module in model.named_modules() if isinstance(module, WEIGHT_LAYERS)]
    if not weights:
        raise ValueError("the model has no Conv or Linear layer: nothing to randomize")
    return weights[-1]


def unrandomized_parameters(model: nn.Module) -> list[str]:
    """Parameters no stage can touch: outside weight layers and normalization layers (e.g. ViT's class
    token and position embedding, MultiheadAttention's packed input projection)."""
    kept = (*WEIGHT_LAYERS, *NORM_LAYERS, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
    return [
        f"{name}.{parameter}" if name else parameter
        for name, module in model.named_modules()
        if not isinstance(module, kept)
        for parameter, _ in module.named_parameters(recurse=False)
    ]


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # "weight" or "norm"


def randomizable_layers(model: nn.Module, reset_batchnorm: bool) -> list[LayerInfo]:
    """Weight layers (and BatchNorm if it is reset) in definition order."""
    layers = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHT_LAYERS):
            layers.append(LayerInfo(name, "weight"))
        elif reset_batchnorm and isinstance(module, NORM_LAYERS):
            layers.append(LayerInfo(name, "norm"))
    return layers


def _boundary_groups(
    layers: list[LayerInfo], head: str, boundary: str, every: int, max_boundaries: int | None
) -> tuple[list[list[str]], list[str], int, int]:
    """Top-down groups (head first), the unused rest, total boundary matches, matches used."""
    names = [layer.name for layer in layers]
    if head not in names:
        raise ValueError(
            f"randomization.head: '{head}' is not a weight layer of this model; "
            f"the top weight layers are {', '.join(reversed(names[-5:]))}"
        )
    pattern = re.compile(boundary)
    is_boundary = [layer.kind == "weight" and bool(pattern.search(layer.name)) for layer in layers]
    total_matches = sum(is_boundary[: names.index(head)])
    walk = list(reversed(range(len(layers))))
    head_at = walk.index(names.index(head))
    groups = [[layers[i].name for i in walk[: head_at + 1]]]
    current: list[str] = []
    matches = used = 0
    limit = total_matches if max_boundaries is None else min(max_boundaries, total_matches)
    rest_start = head_at + 1
    for position in range(head_at + 1, len(walk)):
        i = walk[position]
        current.append(layers[i].name)
        if is_boundary[i]:
            matches += 1
            if (matches % every == 0 and matches <= limit) or matches == limit:  # == limit: the final partial stage
                groups.append(current)
                current = []
                used = matches
                rest_start = position + 1
            if matches >= limit:
                break
    rest = [layers[i].name for i in walk[rest_start:]]
    if limit == 0 and (max_boundaries is None or max_boundaries > 0):
        below = [layers[i].name for i in walk[head_at + 1 :] if layers[i].kind == "weight"]
        raise ValueError(
            f"randomization.boundary: {boundary!r} matches none of the {len(below)} weight layers below the head "
            f"'{head}' (they are named like {', '.join(below[:3])}, …, {', '.join(below[-2:])}), so no stage "
            "would go deeper than the head; fix the pattern, or set randomization.max_boundaries: 0 to randomize "
            "the head only"
        )
    return groups, rest, total_matches, used


def build_plan(
    model: nn.Module,
    *,
    mode: str,
    head: str,
    boundary: str,
    every: int,
    max_boundaries: int | None,
    reset_batchnorm: bool = False,
    split_after: str | None = None,
    layers: list[str] | None = None,
) -> RandomizationPlan:
    all_layers = randomizable_layers(model, reset_batchnorm)
    if mode == "split":
        return _split_plan(model, all_layers, split_after)
    if mode == "independent" and layers:
        return _explicit_plan(model, all_layers, layers, reset_batchnorm)

    groups, rest, total, used = _boundary_groups(all_layers, head, boundary, every, max_boundaries)
    notes = []
    if max_boundaries is not None and max_boundaries > total:
        notes.append(
            f"asked for {max_boundaries} boundary modules matching {boundary!r}, the model has {total}; "
            f"the plan stops at the last boundary reached ({used})"
        )
    if every > 1 and used % every:
        notes.append(
            f"a stage ends every {every} boundaries; the last stage ({len(groups)}) holds the remaining "
            f"{used % every}, so that boundary {used} is reached"
        )
    if mode == "top_down":
        stages = tuple(Stage(i + 1, tuple(g), cumulative=True) for i, g in enumerate(groups))
    elif mode == "independent":
        stages = tuple(Stage(i + 1, tuple(g), cumulative=False) for i, g in enumerate(groups))
    elif mode == "bottom_up":
        full_groups, full_rest, _, _ = _boundary_groups(all_layers, head, boundary, every, None)
        ordered = ([full_rest] if full_rest else []) + list(reversed(full_groups))
        stages = tuple(Stage(i + 1, tuple(g), cumulative=True) for i, g in enumerate(ordered))
        notes.append("bottom-up: the same groups as top-down, applied cumulatively from the input side")
    else:
        raise ValueError(f"randomization.mode: unknown mode '{mode}'")
    return RandomizationPlan(mode, stages, total, used, max_boundaries, tuple(notes))


def _split_plan(model: nn.Module, all_layers: list[LayerInfo], split_after: str | None) -> RandomizationPlan:
    module_names = [name for name, _ in model.named_modules() if name]
    if split_after not in module_names:
        raise ValueError(
            f"randomization.split_after: '{split_after}' is not a module of this model "
            f"(examples: {', '.join(module_names[:6])}, …)"
        )
    position = {name: i for i, name in enumerate(module_names)}
    cut = position[split_after]
    # Children of the split module belong to the kept part.
    randomized = [
        layer.name
        for layer in all_layers
        if position[layer.name] > cut and not layer.name.startswith(split_after + ".")
    ]
    if not randomized:
        raise ValueError(f"randomization.split_after: nothing to randomize after '{split_after}'")
    return RandomizationPlan("split", (Stage(1, tuple(randomized), cumulative=True),), notes=(f"kept up to {split_after}",))


def _explicit_plan(
    model: nn.Module, all_layers: list[LayerInfo], names: list[str], reset_batchnorm: bool
) -> RandomizationPlan:
    known = {layer.name for layer in all_layers}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(
            f"randomization.layers: {unknown} are not weight layers of this model"
            f"{' (or BatchNorm layers with reset_batchnorm)' if reset_batchnorm else ''}"
        )
    stages = tuple(Stage(i + 1, (name,), cumulative=False) for i, name in enumerate(names))
    return RandomizationPlan("independent", stages, notes=("explicit single-layer stages",))
