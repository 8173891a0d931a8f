"""The short summary printed at the end of a run: mean SSIM per method and stage, and the
mean occlusion score per method and kernel, over every committed shard of the output."""

from __future__ import annotations

import pandas as pd

from ..metrics import HEADLINE, METRICS
from ..metrics.scores import AOPC, AUC
from .reader import read_table
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


def format_summary(store: OutputStore) -> str:
    lines = []
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
