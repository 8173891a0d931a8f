"""The long table ``check_scores``: every repaired check's per-image scores, in one schema.

sMPRT, eMPRT, the random-logit test and the paper's §5 refinements each give a number per image,
method and variant (score, normalization, signed/absolute) — per model state where the check is
staged. They all write rows of one table (``results_schema/v1/check_scores.json``), so that one
query reads any check and the score's direction comes from the registry (``SCORES[score].better``)
whatever the check. How to read one score per image and method is in docs/repaired-checks.md.

Experiments keep a ``ScoreRows`` per batch: ``add`` a block of values [method, key, image] per
model state (on the device), ``table`` turns all blocks into Arrow columns with one host copy.
A NaN value carries a reason (a code into ``REASONS``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor

from ..attribution import AttributionMethod
from ..metrics import MapComparer

# Why a value is NaN (code i + 1 is REASONS[i]; 0: no reason, the value is a number).
REASONS = (
    "a compared map holds NaN or inf",
    "undefined for these maps (a constant map)",
    "undefined on the mask (no SSIM window lies inside it, or a map is constant on it)",
    "fewer than 2 pixels in the mask",
    "the trained model's map has zero histogram entropy (constant, or all in one bin)",
)
NON_FINITE, UNDEFINED, UNDEFINED_ON_MASK, FEW_PIXELS, ZERO_ENTROPY = range(1, len(REASONS) + 1)


@dataclass(frozen=True)
class ScoreKey:
    """One variant of a check: the registered score and the map preparation it was computed on."""

    score: str  # a registered score (benchmark.metrics.SCORES): its direction ranks methods
    normalization: str | None  # None: the score does not depend on it (eMPRT's entropy ratio)
    absolute: bool


def comparison_keys(comparer: MapComparer) -> list[ScoreKey]:
    """The keys of a ``MapComparer``'s comparisons, in its order."""
    return [ScoreKey(k.metric, k.normalization, k.absolute) for k in comparer.keys]


def comparison_reasons(values: Tensor, finite: Tensor) -> Tensor:
    """Reason codes [K, N] of comparison values [K, N]: NaN of a pair holding NaN/inf, or else undefined."""
    nan = torch.isnan(values)
    codes = torch.where(finite.expand_as(values), torch.full_like(values, UNDEFINED), torch.full_like(values, NON_FINITE))
    return torch.where(nan, codes, torch.zeros_like(values)).to(torch.int8)


@dataclass
class _Block:
    keys: list[ScoreKey]
    shape: tuple[int, int, int]  # method, key, image
    seed: int | None
    stage: int | None
    mode: str | None
    layer: str | None


class ScoreRows:
    """The rows of one check for one batch."""

    def __init__(self, check: str, methods: list[AttributionMethod]) -> None:
        self.check, self.methods = check, methods
        self.clear()

    def clear(self) -> None:
        self.blocks: list[_Block] = []
        self.columns: dict[str, list[Tensor]] = {name: [] for name in ("value", "bound", "coverage", "reason", "target", "compared")}

    def add(
        self,
        keys: list[ScoreKey],
        values: Tensor,
        targets: Tensor,
        *,
        seed: int | None = None,
        stage: int | None = None,
        mode: str | None = None,
        layer: str | None = None,
        bounds: Tensor | None = None,
        reasons: Tensor | None = None,
        coverage: Tensor | None = None,
        compared: Tensor | None = None,
    ) -> None:
        """One state's values [method, key, image] (``bounds``/``reasons`` the same shape, ``targets``,
        ``coverage``, ``compared`` one per image); everything stays on the device until ``table``."""
        methods, count, images = values.shape
        if methods != len(self.methods) or count != len(keys):
            raise ValueError(f"{self.check}: values {tuple(values.shape)} for {len(self.methods)} methods and {len(keys)} keys")
        full = values.shape
        self.blocks.append(_Block(keys, full, seed, stage, mode, layer))
        nan = torch.full(full, float("nan"), dtype=torch.float64, device=values.device)
        self.columns["value"].append(values.to(torch.float64).reshape(-1))
        self.columns["bound"].append((nan if bounds is None else bounds.to(torch.float64)).reshape(-1))
        codes = torch.zeros(full, dtype=torch.int8, device=values.device) if reasons is None else reasons.to(torch.int8)
        self.columns["reason"].append(codes.reshape(-1))
        per_image = {"target": targets, "coverage": coverage, "compared": compared}
        for name, column in per_image.items():
            fill = float("nan") if name == "coverage" else -1
            column = torch.full((images,), fill, device=values.device) if column is None else column
            self.columns[name].append(column.to(torch.float64).reshape(1, 1, images).expand(full).reshape(-1))

    def table(self, image_ids: list[str]) -> pa.Table | None:
        if not self.blocks:
            return None
        host = {name: torch.cat(parts).cpu().numpy() for name, parts in self.columns.items()}  # one copy each
        method_index, key_rows, image_index, labels = [], [], [], {name: [] for name in ("seed", "stage", "mode", "layer")}
        key_table: list[ScoreKey] = []
        for block in self.blocks:
            m, k, n = (axis.ravel() for axis in np.meshgrid(*[np.arange(size) for size in block.shape], indexing="ij"))
            method_index.append(m)
            image_index.append(n)
            key_rows.append(np.array([len(key_table) + i for i in range(len(block.keys))])[k])
            key_table.extend(block.keys)
            for name in labels:
                labels[name].append(np.full(m.size, getattr(block, name), dtype=object))
        methods, keys, images = (np.concatenate(parts) for parts in (method_index, key_rows, image_index))
        rows = methods.size
        values, bounds, coverage = host["value"], host["bound"], host["coverage"]
        compared = host["compared"].astype(np.int64)
        return pa.table({
            "image_id": _take(image_ids, images, pa.string()),
            "method": _take([m.id for m in self.methods], methods, pa.string()),
            "reduction": _take([m.reduction for m in self.methods], methods, pa.string()),
            "check": pa.array(np.full(rows, self.check, dtype=object), pa.string()),
            "score": _take([k.score for k in key_table], keys, pa.string()),
            "normalization": _take([k.normalization for k in key_table], keys, pa.string()),
            "absolute": _take([k.absolute for k in key_table], keys, pa.bool_()),
            "seed": pa.array(np.concatenate(labels["seed"]), pa.int32()),
            "mode": pa.array(np.concatenate(labels["mode"]), pa.string()),
            "stage": pa.array(np.concatenate(labels["stage"]), pa.int32()),
            "layer": pa.array(np.concatenate(labels["layer"]), pa.string()),
            "target": pa.array(host["target"].astype(np.int32)),
            "compared_class": pa.array(compared.astype(np.int32), mask=compared < 0),
            "value": pa.array(values),
            "bound": pa.array(bounds, mask=np.isnan(bounds)),
            "coverage": pa.array(coverage, mask=np.isnan(coverage)),
            "reason": pa.array([None, *REASONS], pa.string()).take(pa.array(host["reason"].astype(np.int64))),
        })


def _take(labels: list, index: np.ndarray, type: pa.DataType) -> pa.Array:
    return pa.array(labels, type=type).take(pa.array(index, type=pa.int64()))
