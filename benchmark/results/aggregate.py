"""``benchmark aggregate``: the run's tables reduced to what the paper reports, with CIs.

Written to ``<out>/aggregates/<name>.parquet`` (and ``.csv``), each against its schema in
``results_schema/v*/aggregates/``, plus ``_meta.json`` naming the committed shards they cover:

- ``randomization_stats``: per model, dataset, method, reduction, mode, stage, metric,
  normalization and signed/abs: mean, std, count (and NaN count) and a bootstrap CI over
  images (each image's value averaged over seeds first), with the mean Theorem 1/4 bound;
- ``occlusion_curves`` / ``occlusion_scores``: the mean occlusion curve with its band, and the
  mean auc/aopc (and SRG where both orders ran), per kernel, order, imputer and method;
- ``rankings`` and ``rank_agreement``: methods ranked by the randomization check (per stage and
  over all stages) and by occlusion faithfulness, and Kendall's tau between the two: the paper's
  gap as one number (``headline``);
- ``occlusion_relative``: each image's curve minus its random-order curve (the noise method's:
  i.i.d. noise maps rank the tiles in a uniformly random order), when the job has a noise method;
- ``activation_stats``, ``logit_stats``, ``skip_path_stats`` (Fig. 7) and ``kept_features_stats``
  (Fig. 4) when those tables have rows;
- ``check_stats``: the repaired checks of ``check_scores`` (sMPRT, eMPRT, random logit, the paper's
  §5 refinements) per check, score, method, variant and stage, with each score's direction;
- ``sign_flip_stats``: the fraction of image × seed pairs whose explained logit changed sign, per stage;
- ``agreement``: the gap, honestly — Kendall's tau with a bootstrap CI between every check variant's
  (MPRT, the repaired checks) and every faithfulness score's (MIF, LIF, SRG per imputer) method
  ranking, with and without the noise baseline, and sensitivity rows (``benchmark.results.agreement``).

Steps run in order and each sees the tables of the earlier ones (rankings need the stats), so
another experiment adds its aggregate by appending a step to ``STEPS``.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm import tqdm

from ..metrics.base import HEADLINE
from ..metrics.scores import SCORES
from .query import Results
from .schema import AGGREGATES, SCHEMA_VERSION, aggregate_names, aggregate_schema, conform
from .statistics import BootstrapSettings, image_stats, kendall_tau, rank
from .writer import parquet_bytes

META = f"{AGGREGATES}/_meta.json"
PAPER_NORMALIZATION = "second_moment"
# Aggregates written by code other than STEPS: kept (not deleted) when the STEPS are rerun.
EXTERNAL: set[str] = set()


@dataclass
class Context:
    results: Results
    settings: BootstrapSettings
    progress: bool
    tables: dict[str, pd.DataFrame]

    def chunks(self, table: str, keys: list[str], label: str) -> Iterable[dict[str, Any]]:
        """The distinct values of ``keys`` in ``table``, one aggregation chunk each, with a progress bar."""
        columns = ", ".join(f'"{k}"' for k in keys)
        rows = self.results.sql(f"SELECT DISTINCT {columns} FROM {table} ORDER BY {columns}").to_pylist()
        return tqdm(rows, desc=label, unit="chunk", disable=not self.progress or not rows, file=sys.stderr, leave=False)


Step = Callable[[Context], dict[str, pd.DataFrame]]


def _where(chunk: dict[str, Any]) -> tuple[str, list[Any]]:
    return " AND ".join(f'"{k}" = ?' for k in chunk), list(chunk.values())


def randomization_step(context: Context) -> dict[str, pd.DataFrame]:
    if not context.results.count("randomization"):
        return {}
    keys = ["method", "reduction", "mode", "stage"]
    pieces = []
    for chunk in context.chunks("randomization", ["model", "dataset", "metric", "normalization", "absolute"], "randomization"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"""SELECT method, reduction, mode, stage, image_id,
                       avg(value) FILTER (WHERE NOT isnan(value)) AS value,
                       avg(bound) FILTER (WHERE NOT isnan(bound)) AS bound,
                       count(DISTINCT seed) AS seeds
                FROM randomization WHERE {where} GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        extra = frame.groupby(keys).agg(bound_mean=("bound", "mean"), seeds=("seeds", "max")).reset_index()
        pieces.append(stats.merge(extra, on=keys).assign(**chunk))
    layers = context.results.sql(
        "SELECT model, dataset, mode, stage, any_value(layers) AS layers FROM randomization GROUP BY ALL"
    ).to_pandas()
    stats = pd.concat(pieces, ignore_index=True).merge(layers, on=["model", "dataset", "mode", "stage"])
    return {"randomization_stats": stats}


def occlusion_step(context: Context) -> dict[str, pd.DataFrame]:
    if not context.results.count("occlusion"):
        return {}
    keys = ["method", "reduction"]
    curves, scores, relative = [], [], []
    baseline = random_order_method(context.results.manifest)
    for chunk in context.chunks("occlusion", ["model", "dataset", "kernel", "order", "imputer"], "occlusion"):
        where, params = _where(chunk)
        points = context.results.sql(
            f"""SELECT method, reduction, image_id, generate_subscripts(curve, 1) - 1 AS step,
                       unnest(curve)::DOUBLE AS value, unnest(logit_curve)::DOUBLE AS logit
                FROM occlusion WHERE {where}""",
            params,
        ).to_pandas()
        stats = image_stats(points, keys + ["step"], context.settings)
        logit = points.groupby(keys + ["step"]).logit.mean().rename("logit_mean").reset_index()
        curves.append(stats.merge(logit, on=keys + ["step"]).assign(**chunk))
        summary = context.results.sql(
            f"""SELECT method, reduction, image_id, score, value FROM occlusion
                UNPIVOT (value FOR score IN (auc, aopc)) WHERE {where}""",
            params,
        ).to_pandas()
        scores.append(image_stats(summary, keys + ["score"], context.settings).assign(**chunk))
        if baseline is not None and (points.method == baseline).any():
            relative.append(_relative_curves(points, baseline, keys, context.settings).assign(**chunk))
    # SRG = mean(LIF curve) - mean(MIF curve) per image, where both orders were run
    srg = context.results.sql(
        """SELECT model, dataset, kernel, imputer, method, reduction, image_id, 'srg' AS score,
                  avg(auc) FILTER (WHERE "order" = 'lif') - avg(auc) FILTER (WHERE "order" = 'mif') AS value
           FROM occlusion GROUP BY ALL HAVING count(DISTINCT "order") = 2"""
    ).to_pandas()
    for chunk, frame in srg.groupby(["model", "dataset", "kernel", "imputer"]):
        stats = image_stats(frame, keys + ["score"], context.settings)
        scores.append(stats.assign(**dict(zip(["model", "dataset", "kernel", "imputer"], chunk)), order=None))
    tables = {
        "occlusion_curves": pd.concat(curves, ignore_index=True),
        "occlusion_scores": pd.concat(scores, ignore_index=True),
    }
    if relative:
        tables["occlusion_relative"] = pd.concat(relative, ignore_index=True)
    return tables


def random_order_method(manifest: dict[str, Any]) -> str | None:
    """The job's first noise method: its i.i.d. maps rank the tiles in a uniformly random order, so
    its occlusion curve is the random-order baseline of the others."""
    from ..config import JobSpec

    try:
        methods = JobSpec.model_validate(manifest.get("spec", {})).methods
    except ValueError:
        return None
    return next((method.method_id for method in methods if method.name == "noise"), None)


def _relative_curves(points: pd.DataFrame, baseline: str, keys: list[str], settings: BootstrapSettings) -> pd.DataFrame:
    """Each image's curve minus the same image's random-order curve, then statistics over images
    (paired: the CI is that of the mean difference)."""
    base = points[points.method == baseline][["image_id", "step", "value"]].rename(columns={"value": "base"})
    others = points[points.method != baseline].merge(base, on=["image_id", "step"])
    others = others.assign(value=others["value"] - others["base"])
    return image_stats(others, keys + ["step"], settings).assign(baseline=baseline)


def ranking_step(context: Context) -> dict[str, pd.DataFrame]:
    """Rankings of the randomization check and of faithfulness, and Kendall's tau between them."""
    stats = context.tables.get("randomization_stats")
    scores = context.tables.get("occlusion_scores")
    pieces = []
    if stats is not None:
        per_stage = stats[["model", "dataset", "mode", "stage", "metric", "normalization", "absolute", "method", "mean"]]
        overall = (
            per_stage.groupby(["model", "dataset", "mode", "metric", "normalization", "absolute", "method"])["mean"]
            .mean()
            .reset_index()
            .assign(stage=pd.NA)
        )
        randomization = pd.concat([per_stage, overall], ignore_index=True).rename(columns={"mean": "score"})
        pieces.append(_ranked(randomization.assign(check="randomization", kernel=pd.NA),
                              ["model", "dataset", "mode", "stage", "metric", "normalization", "absolute"]))
    if scores is not None:
        paper = scores[(scores["order"] == "mif") & (scores["imputer"] == "blur")]  # the agreement aggregate has the rest
        faithfulness = paper.rename(columns={"mean": "score", "score": "metric"})[
            ["model", "dataset", "kernel", "metric", "method", "score"]
        ]
        pieces.append(_ranked(faithfulness.assign(check="faithfulness", mode=pd.NA, stage=pd.NA,
                                                  normalization=pd.NA, absolute=pd.NA),
                              ["model", "dataset", "kernel", "metric"]))
    if not pieces:
        return {}
    rankings = pd.concat(pieces, ignore_index=True)
    tables = {"rankings": rankings}
    if stats is not None and scores is not None:
        tables["rank_agreement"] = _agreement(rankings)
    return tables


def _ranked(frame: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Ranks within each group of ``keys``, in the direction the score's registry entry says
    (``benchmark.metrics.scores``); a score this process has not registered is left out, loudly."""
    frame = frame[frame["score"].notna()].copy()
    unknown = sorted(set(frame["metric"]) - set(SCORES))
    if unknown:
        warnings.warn(
            f"rankings: no direction known for {', '.join(unknown)} (not registered in this process: import the "
            "module that registers them, see benchmark.metrics.register_metric); not ranked",
            stacklevel=2,
        )
        frame = frame[~frame["metric"].isin(unknown)]
    frame["better"] = frame["metric"].map(lambda name: SCORES[name].better)
    frame["rank"] = np.nan
    for _, index in frame.groupby(keys, dropna=False).groups.items():
        group = frame.loc[index]
        frame.loc[index, "rank"] = rank(group["score"].to_numpy(np.float64), group["better"].iloc[0])
    return frame


def _agreement(rankings: pd.DataFrame) -> pd.DataFrame:
    checks = rankings[rankings.check == "randomization"]
    faithful = rankings[(rankings.check == "faithfulness") & (rankings.metric == "auc")]
    keys = ["model", "dataset", "mode", "stage", "metric", "normalization", "absolute"]
    rows = []
    for key, check in checks.groupby(keys, dropna=False):
        model, dataset = key[0], key[1]
        for kernel, occlusion in faithful[(faithful.model == model) & (faithful.dataset == dataset)].groupby("kernel"):
            both = check.merge(occlusion, on="method", suffixes=("", "_f"))
            tau, p_value = kendall_tau(both["rank"].to_numpy(), both["rank_f"].to_numpy())
            rows.append({**dict(zip(keys, key)), "faithfulness_metric": "auc", "kernel": kernel,
                         "methods": len(both), "tau": tau, "p_value": p_value})
    agreement = pd.DataFrame(rows)
    if agreement.empty:
        return agreement
    agreement["headline"] = False
    for _, group in agreement.groupby(["model", "dataset", "mode"]):
        headline = group[(group.metric == HEADLINE) & group.stage.isna() & (group.kernel == group.kernel.max())]
        headline = _prefer(headline, "normalization", PAPER_NORMALIZATION)
        headline = _prefer(headline, "absolute", False)
        agreement.loc[headline.index[:1], "headline"] = True
    return agreement


def _prefer(frame: pd.DataFrame, column: str, value: Any) -> pd.DataFrame:
    chosen = frame[frame[column] == value]
    return chosen if not chosen.empty else frame.sort_values(column)


def activation_step(context: Context) -> dict[str, pd.DataFrame]:
    if not context.results.count("activations"):
        return {}
    keys = ["layer", "layer_index"]
    pieces = []
    for chunk in context.chunks("activations", ["model", "dataset"], "activations"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"SELECT layer, layer_index, image_id, nonpositive AS value, levels, quantiles FROM activations WHERE {where}",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        quantiles = frame.groupby(keys).agg(
            levels=("levels", "first"),
            quantiles_mean=("quantiles", lambda q: list(np.nanmean(np.stack(q.to_numpy()).astype(np.float64), axis=0))),
        ).reset_index()
        pieces.append(stats.merge(quantiles, on=keys).assign(**chunk))
    return {"activation_stats": pd.concat(pieces, ignore_index=True)}


def logit_step(context: Context) -> dict[str, pd.DataFrame]:
    if not context.results.count("logits"):
        return {}
    keys = ["mode", "stage", "metric"]
    pieces = []
    for chunk in context.chunks("logits", ["model", "dataset"], "logits"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"""SELECT mode, stage, metric, image_id,
                       avg(value) FILTER (WHERE NOT isnan(value)) AS value, count(DISTINCT seed) AS seeds
                FROM (FROM logits UNPIVOT (value FOR metric IN (pearson, spearman)) WHERE {where}) GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        seeds = frame.groupby(keys).seeds.max().reset_index()
        pieces.append(stats.merge(seeds, on=keys).assign(**chunk))
    layers = context.results.sql(
        "SELECT model, dataset, mode, stage, any_value(layers) AS layers FROM logits GROUP BY ALL"
    ).to_pandas()
    return {"logit_stats": pd.concat(pieces, ignore_index=True).merge(layers, on=["model", "dataset", "mode", "stage"])}


def overtaking_step(context: Context) -> dict[str, pd.DataFrame]:
    """Supplement I (Figs. 7-9): Cauchy overtaking probabilities from the mean quantiles of
    ``activation_stats`` (K from the means over images, as the paper computes them)."""
    from ..experiments.activations import overtaking_probabilities

    stats = context.tables.get("activation_stats")
    if stats is None or stats.empty:
        return {}
    means = stats[["model", "dataset", "layer", "layer_index", "quantiles_mean", "count"]]
    table = pa.table({
        "model": pa.array(means.model.astype(str)), "dataset": pa.array(means.dataset.astype(str)),
        "layer": pa.array(means.layer.astype(str)), "layer_index": pa.array(means.layer_index.astype("int32")),
        "quantiles": pa.array([list(map(float, q)) for q in means.quantiles_mean], pa.list_(pa.float64())),
    })
    frame = overtaking_probabilities(table).to_pandas().rename(columns={"K": "k"})
    levels = {round(float(level), 2): i for i, level in enumerate(stats.levels.iloc[0])}
    quantiles = {(row.model, row.dataset, row.layer): row.quantiles_mean for row in means.itertuples()}
    # inverted: the low quantile has the larger magnitude (negative activations, as in EfficientNet)
    frame["inverted"] = [
        abs(quantiles[(m, d, l)][levels[round(ql, 2)]]) > abs(quantiles[(m, d, l)][levels[round(qh, 2)]])
        for m, d, l, qh, ql in zip(frame.model, frame.dataset, frame.layer, frame.q_high, frame.q_low)
    ]
    images = means.set_index(["model", "dataset", "layer"])["count"]
    frame["images"] = [int(images[key]) for key in zip(frame.model, frame.dataset, frame.layer)]
    return {"overtaking": frame}


def stage_layers(manifest: dict[str, Any]) -> dict[int, list[str]]:
    """Modules randomized at each stage of the run's plan; stage 0 (the trained model): none."""
    stages = manifest.get("randomization_plan", {}).get("stages", [])
    return {0: [], **{int(stage["stage"]): list(stage["modules"]) for stage in stages}}


def _with_layers(frame: pd.DataFrame, manifest: dict[str, Any]) -> pd.DataFrame:
    layers = stage_layers(manifest)
    return frame.assign(layers=[layers.get(int(stage), []) for stage in frame["stage"]])


def skip_path_step(context: Context) -> dict[str, pd.DataFrame]:
    """Paper Fig. 7: the share of relevance through the skip connection and the residual branch, and
    how similar each part stays to the trained model's, per state."""
    if not context.results.count("skip_path"):
        return {}
    keys = ["method", "block", "stage", "component", "quantity"]
    pieces = []
    for chunk in context.chunks("skip_path", ["model", "dataset"], "skip_path"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"""SELECT method, block, stage, component, quantity, image_id,
                       avg(value) FILTER (WHERE NOT isnan(value)) AS value, count(DISTINCT seed) AS seeds
                FROM (FROM skip_path UNPIVOT (value FOR quantity IN (share, relevance, ssim, spearman)) WHERE {where})
                GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        seeds = frame.groupby(keys).seeds.max().reset_index()
        pieces.append(stats.merge(seeds, on=keys).assign(**chunk))
    return {"skip_path_stats": _with_layers(pd.concat(pieces, ignore_index=True), context.results.manifest)}


def kept_features_step(context: Context) -> dict[str, pd.DataFrame]:
    """Paper Fig. 4: how similar the explanation of the kept layer's activations is to the explanation
    of the output, for the trained model and after randomizing everything above the kept layer."""
    if not context.results.count("kept_features"):
        return {}
    keys = ["method", "layer", "stage", "metric", "normalization", "absolute"]
    pieces = []
    for chunk in context.chunks("kept_features", ["model", "dataset"], "kept_features"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"""SELECT method, layer, stage, metric, normalization, absolute, image_id,
                       avg(value) FILTER (WHERE NOT isnan(value)) AS value, count(DISTINCT seed) AS seeds
                FROM kept_features WHERE {where} GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        seeds = frame.groupby(keys).seeds.max().reset_index()
        pieces.append(stats.merge(seeds, on=keys).assign(**chunk))
    return {"kept_features_stats": _with_layers(pd.concat(pieces, ignore_index=True), context.results.manifest)}


def check_step(context: Context) -> dict[str, pd.DataFrame]:
    """The repaired checks (table ``check_scores``): statistics over images per check variant and stage,
    with the score's direction from the registry (the agreement with faithfulness builds on these)."""
    if not context.results.count("check_scores"):
        return {}
    keys = ["score", "method", "reduction", "normalization", "absolute", "mode", "stage"]
    pieces = []
    for chunk in context.chunks("check_scores", ["model", "dataset", "check"], "repaired checks"):
        where, params = _where(chunk)
        # null keys (normalization of emprt, mode/stage of random_logit) through sentinels: pandas drops NaN groups
        frame = context.results.sql(
            f"""SELECT score, method, reduction, coalesce(normalization, '') AS normalization, absolute,
                       coalesce(mode, '') AS mode, coalesce(stage, -1) AS stage, image_id,
                       avg(value) FILTER (WHERE NOT isnan(value)) AS value, avg(bound) AS bound,
                       avg(coverage) AS coverage, count(DISTINCT seed) AS seeds, any_value(layer) AS layer
                FROM check_scores WHERE {where} GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        extra = frame.groupby(keys).agg(seeds=("seeds", "max"), bound_mean=("bound", "mean"),
                                        coverage_mean=("coverage", "mean"), layer=("layer", "first")).reset_index()
        pieces.append(stats.merge(extra, on=keys).assign(**chunk))
    stats = pd.concat(pieces, ignore_index=True)
    stats["normalization"] = stats["normalization"].replace("", None)
    stats["mode"] = stats["mode"].replace("", None)
    stats["stage"] = stats["stage"].astype(object).where(stats["stage"] >= 0, None)
    stats["better"] = stats["score"].map(lambda name: SCORES[name].better if name in SCORES else None)
    return {"check_stats": stats}


def sign_flip_step(context: Context) -> dict[str, pd.DataFrame]:
    """How often the explained logit changed sign, per stage (table ``target_logits``)."""
    if not context.results.count("target_logits"):
        return {}
    keys = ["mode", "stage"]
    pieces = []
    for chunk in context.chunks("target_logits", ["model", "dataset"], "sign flips"):
        where, params = _where(chunk)
        frame = context.results.sql(
            f"""SELECT mode, stage, image_id, avg(flipped::DOUBLE) AS value, count(DISTINCT seed) AS seeds,
                       count(*) AS pairs, count(*) FILTER (WHERE flipped) AS flipped
                FROM target_logits WHERE {where} GROUP BY ALL""",
            params,
        ).to_pandas()
        stats = image_stats(frame, keys, context.settings)
        extra = frame.groupby(keys).agg(seeds=("seeds", "max"), pairs=("pairs", "sum"), flipped=("flipped", "sum")).reset_index()
        pieces.append(stats.merge(extra, on=keys).assign(**chunk))
    stats = pd.concat(pieces, ignore_index=True)
    plan = {s["stage"]: s["modules"] for s in context.results.manifest.get("randomization_plan", {}).get("stages", [])}
    stats["layers"] = stats["stage"].map(lambda stage: plan.get(int(stage)))
    return {"sign_flip_stats": stats}


def agreement_step(context: Context) -> dict[str, pd.DataFrame]:
    """The gap, honestly: Kendall's tau between every check variant's and every faithfulness score's
    method ranking, with a bootstrap CI over images (``benchmark.results.agreement``)."""
    from .agreement import agreement_table

    table = agreement_table(context.results, context.settings)
    return {"agreement": table} if len(table) else {}


STEPS: list[Step] = [
    randomization_step, occlusion_step, ranking_step, activation_step, overtaking_step, logit_step, skip_path_step,
    kept_features_step, check_step, sign_flip_step, agreement_step,
]


# -- running, writing, reading -------------------------------------------------------------------
def compute_aggregates(
    results: Results, settings: BootstrapSettings = BootstrapSettings(), progress: bool = False
) -> dict[str, pa.Table]:
    """Every aggregate the run's committed rows allow, as Arrow tables in their schemas."""
    results.require_committed("aggregate")
    context = Context(results, settings, progress, {})
    for step in STEPS:
        context.tables.update(step(context))
    return {name: to_arrow(name, frame) for name, frame in context.tables.items()}


def to_arrow(name: str, frame: pd.DataFrame) -> pa.Table:
    """A DataFrame in an aggregate's schema (column order, types; NaN -> null where nullable)."""
    schema = aggregate_schema(name)
    columns = []
    for field in schema.arrow:
        values = frame[field.name] if field.name in frame else pd.Series([None] * len(frame), dtype=object)
        if pa.types.is_floating(field.type):
            data = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
            columns.append(pa.array(data, field.type, mask=np.isnan(data) if field.nullable else None))
        else:
            columns.append(pa.array([None if _missing(v) else _plain(v) for v in values], field.type))
    return conform(pa.Table.from_arrays(columns, schema=schema.arrow), schema, {})


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def signature(results: Results) -> str:
    """Identifies the committed shards aggregates were computed from (to spot stale ones)."""
    marks = sorted((shard, marker.get("committed_at")) for shard, marker in results.committed.items())
    return hashlib.sha256(json.dumps([results.manifest.get("spec_hash"), marks]).encode()).hexdigest()[:16]


def write_aggregates(results: Results, tables: dict[str, pa.Table], settings: BootstrapSettings) -> dict[str, Any]:
    """Parquet (and CSV) per aggregate, then ``_meta.json``; stale aggregates of earlier runs removed."""
    from .formatting import render

    for name in aggregate_names():
        if name in tables:
            results.store.write_bytes(f"{AGGREGATES}/{name}.parquet", parquet_bytes(tables[name]))
            results.store.write_bytes(f"{AGGREGATES}/{name}.csv", render(tables[name], "csv").encode())
        elif name not in EXTERNAL:
            results.store.delete(f"{AGGREGATES}/{name}.parquet")
            results.store.delete(f"{AGGREGATES}/{name}.csv")
    meta = {
        "schema_version": SCHEMA_VERSION,
        "signature": signature(results),
        "spec_hash": results.manifest.get("spec_hash"),
        "shards": sorted(results.committed),
        "shards_planned": len(results.planned),
        "complete": results.complete,
        "bootstrap": settings.describe(),
        "tables": {name: table.num_rows for name, table in tables.items()},
        "created_at": time.time(),
    }
    results.store.write_json(META, meta)
    results.__dict__.pop("connection", None)  # the next query sees the new aggregates as views
    return meta


def aggregates_meta(results: Results) -> dict[str, Any] | None:
    return results.store.read_json(META)


def load_aggregates(
    results: Results, settings: BootstrapSettings | None = None, progress: bool = False, refresh: bool = False
) -> tuple[dict[str, pa.Table], bool]:
    """The aggregates, computed and written first when missing, stale or ``refresh``;
    returns them and whether they were (re)computed now."""
    meta = aggregates_meta(results)
    current = meta is not None and meta.get("signature") == signature(results)
    if current and not refresh:
        return {name: table for name in aggregate_names() if (table := results.aggregate(name)) is not None}, False
    settings = settings or BootstrapSettings()
    tables = compute_aggregates(results, settings, progress)
    write_aggregates(results, tables, settings)
    return tables, True


__all__ = [
    "BootstrapSettings", "STEPS", "compute_aggregates", "load_aggregates",
    "write_aggregates", "to_arrow",
]
