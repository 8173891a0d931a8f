"""The short summary printed at the end of a run: mean SSIM per method and stage, the mean
occlusion score per method and kernel, over every committed shard of the output, and a warning
for methods whose trained-model maps were degenerate (all zero, or not finite) for some images."""

from __future__ import annotations

import pandas as pd

from ..metrics import HEADLINE, METRICS
from ..metrics.scores import AOPC, AUC
from .reader import committed_shards, read_table
from .store import OutputStore


def randomization_summary(store: OutputStore, metric: str = HEADLINE, normalization: str = "second_moment") -> pd.DataFrame:
    table = read_table(store, "randomization").to_pandas()
    if table.empty:
        return table
    selected = table[(table.metric == metric) & (table.normalization == normalization) & (~table.absolute)]
    if selected.empty:  # the run used other normalizations
        selected = table[(table.metric == metric) & (~table.absolute)]
    return selected.pivot_table(index="method", columns="stage", values="value", aggfunc="mean")


def occlusion_summary(store: OutputStore) -> pd.DataFrame:
    table = read_table(store, "occlusion").to_pandas()
    if table.empty:
        return table
    return table.pivot_table(index="method", columns="kernel", values=["auc", "aopc"], aggfunc="mean")


def degenerate_maps(store: OutputStore) -> dict[str, dict[str, int]]:
    """Method -> {'all_zero': images, 'non_finite': images} over the committed shards (their markers)."""
    totals: dict[str, dict[str, int]] = {}
    for marker in committed_shards(store).values():
        for method, kinds in (marker.get("degenerate_maps") or {}).items():
            for kind, count in kinds.items():
                totals.setdefault(method, {}).setdefault(kind, 0)
                totals[method][kind] += int(count)
    return totals


def degenerate_warnings(store: OutputStore) -> list[str]:
    counts = degenerate_maps(store)
    if not counts:
        return []
    shards = read_table(store, "shards")
    images = int(sum(shards.column("images").to_pylist())) if shards.num_rows else 0
    lines = []
    for method, kinds in sorted(counts.items()):
        if kinds.get("all_zero"):
            lines.append(
                f"warning: {method}: the trained model's map is all zero for {kinds['all_zero']} of {images} images "
                "(no information: Spearman is NaN, SSIM/MSE compare against an empty map)"
            )
        if kinds.get("non_finite"):
            lines.append(
                f"warning: {method}: the trained model's map holds NaN or inf for {kinds['non_finite']} of {images} "
                "images (every metric of them is NaN)"
            )
    return lines


def format_summary(store: OutputStore) -> str:
    lines = degenerate_warnings(store)
    if lines:
        lines.append("")
    headline = randomization_summary(store)
    if not headline.empty:
        lines.append(f"Mean {METRICS[HEADLINE].label} to the trained model's map (signed, second-moment normalized; "
                     f"{METRICS[HEADLINE].better} = more change), by stage:")
        lines.append(headline.to_string(float_format=lambda v: f"{v:.3f}"))
    occlusion = occlusion_summary(store)
    if not occlusion.empty:
        lines.append("")
        lines.append(f"Occlusion: mean softmax over the curve (auc, {AUC.better} is better) and AOPC ({AOPC.better} is "
                     "better), by kernel:")
        lines.append(occlusion.to_string(float_format=lambda v: f"{v:.4f}"))
    return "\n".join(lines) if lines else "No committed results yet."
