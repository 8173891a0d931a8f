"""The short summary printed at the end of a run, over every committed shard of the output: first
the agreement between the checks' and faithfulness's method rankings (the headline,
``benchmark.results.agreement``), then what each table the run wrote says in a few numbers (mean
SSIM per method and stage, mean occlusion scores, logit correlation per stage, activation
statistics, skip-path shares, kept-layer similarity), a warning for methods whose trained-model
maps were degenerate (all zero, or not finite) for some images and one for a model with untrained
weights, and the images that could not be read, with the reason."""

from __future__ import annotations

import pandas as pd

from ..metrics import HEADLINE, METRICS
from ..metrics.scores import AOPC, AUC
from .errors import describe_load_failures, load_failures
from .reader import degenerate_maps, read_table
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
    about a trained network's explanations (heat-map figures are labelled 'untrained' then)."""
    weights = str(manifest.get("weights", ""))
    requested = str(manifest.get("spec", {}).get("model", {}).get("weights", ""))
    if weights.startswith("random") or requested == "random":
        return (f"warning: the model has untrained weights ({weights or requested}): rankings, the agreement "
                "table and every map describe a random network, not a trained one")
    return None


def agreement_summary(store: OutputStore) -> list[str]:
    """The headline agreement rows and the main grid (with the noise baseline), as text. A run that
    finished is not failed by its summary: if the table cannot be computed here (an unreadable
    aggregate file of an earlier run, say), the summary says so and why."""
    from .agreement import agreement_grid, agreement_table, headline_sentences
    from .query import open_results

    try:
        results = open_results(store)
        if not results.committed:
            return []
        table = agreement_table(results)
    except Exception as error:  # noqa: BLE001 - reported, not raised: the run itself succeeded
        return [f"The gap (agreement table) was not computed: {type(error).__name__}: {str(error).splitlines()[0]}; "
                f"`benchmark aggregate {store.uri}` computes it"]
    if len(table) == 0:
        return []
    lines = ["The gap: Kendall's tau between each check's and each faithfulness score's method ranking, "
             "[95 % bootstrap CI over images], * = the CI excludes 0 (with the noise baseline, largest tile size; "
             "every row, without noise and the sensitivity rows: benchmark aggregate -> aggregates/agreement.csv):"]
    lines += headline_sentences(table)
    grid = agreement_grid(table)
    if len(grid):
        one_model = len(grid[["model", "dataset"]].drop_duplicates()) == 1
        lines.append(grid.drop(columns=["model", "dataset"]).set_index("variant").to_string() if one_model
                     else grid.to_string(index=False))
    return lines


def _stage_names(frame: pd.DataFrame) -> dict[int, str]:
    first = frame.drop_duplicates("stage").set_index("stage")["layers"]
    return {int(stage): (list(layers)[0] if len(layers) else "trained") for stage, layers in first.items()}


def logit_summary(store: OutputStore) -> pd.DataFrame:
    table = read_table(store, "logits").to_pandas()
    if table.empty:
        return table
    means = table.groupby("stage")[["pearson", "spearman"]].mean()
    means.index = [f"{stage}: {_stage_names(table)[stage]}" for stage in means.index]
    return means.rename_axis("randomized")


def activation_summary(store: OutputStore) -> pd.DataFrame:
    table = read_table(store, "activations").to_pandas()
    if table.empty:
        return table
    return table.groupby(["layer_index", "layer"]).agg(images=("image_id", "nunique"), nonpositive=("nonpositive", "mean"))


def skip_path_summary(store: OutputStore) -> pd.DataFrame:
    table = read_table(store, "skip_path").to_pandas()
    if table.empty:
        return table
    parts = table[table.component.isin(["skip", "residual"])]
    return parts.pivot_table(index=["method", "stage"], columns="component", values="share", aggfunc="mean")


def kept_summary(store: OutputStore, metric: str = "ssim") -> pd.DataFrame:
    table = read_table(store, "kept_features").to_pandas()
    if table.empty:
        return table
    selected = table[(table.metric == metric) & ~table.absolute]
    return selected.pivot_table(index="method", columns="stage", values="value", aggfunc="mean")


def _sections() -> tuple:
    """(summary, heading, number format) per table; the first two headings name the registered scores."""
    headline = METRICS[HEADLINE]
    return (
        (randomization_summary, f"Mean {headline.label} to the trained model's map (signed, second-moment normalized; "
                                f"{headline.better} = more change), by stage:", "{:.3f}"),
        (occlusion_summary, f"Occlusion: mean softmax over the curve (auc, {AUC.better} is better) and AOPC "
                            f"({AOPC.better} is better), by kernel:", "{:.4f}"),
        *SECTIONS,
    )


SECTIONS = (  # the tables of the paper's other experiments
    (logit_summary, "Logits: mean correlation of all logits before and after randomizing (1 = unchanged), by "
                    "randomized stage:", "{:.3f}"),
    (activation_summary, "Activations: images and mean fraction of non-positive activations per layer (quantiles in "
                         "the 'activations' table; `benchmark plot` draws supplement Fig. 7-10):", "{:.3f}"),
    (skip_path_summary, "Skip path: mean share of the relevance through the skip connection and the residual "
                        "branch, by stage (0 = trained):", "{:.3f}"),
    (kept_summary, "Kept layer: mean SSIM between the kept layer's and the output's explanation (signed), by stage "
                   "(0 = trained):", "{:.3f}"),
)


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
    if (untrained := untrained_warning(store.read_json("manifest.json") or {})) is not None:
        lines.append(untrained)
    agreement = agreement_summary(store)
    if agreement:
        lines += ([""] if lines else []) + agreement
    for summary, heading, number in _sections():
        frame = summary(store)
        if not frame.empty:
            lines += ([""] if lines else []) + [heading, frame.to_string(float_format=number.format)]
    failures = load_failures(read_table(store, "errors"))
    if failures:
        count = sum(len(group.image_ids) for group in failures)
        lines += ([""] if lines else []) + [
            f"{count} image{'s' if count != 1 else ''} could not be read and {'are' if count != 1 else 'is'} left out "
            "(rows of the 'errors' table; the run itself succeeded):",
            *(f"  {line}" for line in describe_load_failures(failures)),
        ]
    return "\n".join(lines) if lines else "No committed results yet."
