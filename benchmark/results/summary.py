"""The short summary printed at the end of a run: the agreement between the randomization checks'
and faithfulness's method rankings first (the headline, ``benchmark.results.agreement``), mean SSIM
per method and stage, the mean occlusion score per method and kernel, over every committed shard
of the output, a warning for methods whose trained-model maps were degenerate (all zero, or not
finite) for some images, and one for a model with untrained weights."""

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
    """Mean auc and aopc per method and kernel of the paper's curves (most relevant first, blurred copy)."""
    table = read_table(store, "occlusion").to_pandas()
    table = table[(table["order"] == "mif") & (table["imputer"] == "blur")]
    if table.empty:
        return table
    return table.pivot_table(index="method", columns="kernel", values=["auc", "aopc"], aggfunc="mean")


def untrained_warning(manifest: dict) -> str | None:
    """A warning when the run's model has untrained (random) weights: its checks and maps say nothing
    about a trained network's explanations, and heat-map figures are labelled 'untrained'."""
    weights = str(manifest.get("weights", ""))
    requested = str(manifest.get("spec", {}).get("model", {}).get("weights", ""))
    if weights.startswith("random") or requested == "random":
        return (f"warning: the model has untrained weights ({weights or requested}): rankings, the agreement "
                "table and every map describe a random network, not a trained one")
    return None


def agreement_summary(store: OutputStore) -> list[str]:
    """The headline agreement rows and the main grid (with the noise baseline), as text."""
    from .agreement import agreement_grid, agreement_table, headline_sentences
    from .query import open_results

    results = open_results(store.uri)
    if not results.committed:
        return []
    table = agreement_table(results)
    if len(table) == 0:
        return []
    grid = agreement_grid(table)
    lines = ["The gap: Kendall's tau between each check's and each faithfulness score's method ranking, "
             "[95 % bootstrap CI over images], * = the CI excludes 0 (with the noise baseline, largest tile size; "
             "every row, without noise and the sensitivity rows: benchmark aggregate -> aggregates/agreement.csv):"]
    lines += headline_sentences(table)
    if len(grid):
        lines.append(grid.drop(columns=["model", "dataset"]).set_index("variant").to_string() if grid[["model", "dataset"]]
                     .drop_duplicates().shape[0] == 1 else grid.to_string(index=False))
    return lines


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
    manifest = store.read_json("manifest.json") or {}
    if (untrained := untrained_warning(manifest)) is not None:
        lines.append(untrained)
    if lines:
        lines.append("")
    agreement = agreement_summary(store)
    if agreement:
        lines += agreement + [""]
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
