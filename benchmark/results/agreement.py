"""The gap, honestly: does a randomization check rank methods as faithfulness does? (issue 13, item 6)

For every check variant — MPRT by SSIM / MSE / Spearman on signed and absolute maps, sMPRT, eMPRT,
the random-logit test, the paper's two §5 refinements — against every faithfulness score — MIF and
LIF occlusion (mean softmax over the curve) and SRG = mean(LIF) − mean(MIF), per imputer and tile
size — Kendall's τ-b between the two method rankings, with a percentile bootstrap CI over images:
each resample draws images with replacement, recomputes *both* rankings from the resampled means and
their τ (a paired bootstrap: the two rankings see the same images). Rows come with and without the
noise baseline, whose near-perfect "pass" of every randomization check can carry τ alone.

Per image, a check's value is its mean over seeds and over the plan's stages (the ranking by the
mean over stages, as ``rank_agreement``); eMPRT has one stage, the random-logit test none. A method
is ranked first by the check when it changes its map the most (each score's direction from
``benchmark.metrics.SCORES``), by faithfulness when its MIF curve falls fastest (low mean), its LIF
curve stays high (high mean) or its SRG is high.

Sensitivity rows (item 8) vary one choice that is not about the explanation at a time, against the
default (second-moment normalization, signed maps, LRP seeded with 1): the other normalizations,
absolute maps, and LRP seeded with the logit (every ``lrp_*`` method replaced by its ``*_logit``
twin of the same job, on both sides). Column ``varied`` names the choice; null on the main rows.

Vectorised: per method set, one matrix of resample counts ``W[images, resamples]`` turns the values
of every variant at once into resample means (``values @ W``, NaN-aware as in
:mod:`.statistics`); τ-b of every (check, faithfulness) pair and resample is then a few ``einsum``
over the sign matrices of the method pairs, τ-b = Σ s_x s_y / sqrt(Σ s_x² · Σ s_y²) (ties are
zero signs, which is exactly the tie correction of τ-b; a pair with a method that has no value on
either side is left out of all three sums).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..metrics.base import HEADLINE
from ..metrics.scores import SCORES
from .statistics import BootstrapSettings, kendall_tau, resample_counts

DEFAULT_NORMALIZATION = "second_moment"
# Faithfulness scores of the occlusion curves and which way ranks a method first.
FAITHFULNESS = {"mif": "lower", "lif": "higher", "srg": "higher"}
FAITHFULNESS_TEXT = {
    "mif": "MIF (most relevant tiles first: mean softmax over the curve, lower is better)",
    "lif": "LIF (least relevant first: mean softmax, higher is better)",
    "srg": "SRG (mean LIF − mean MIF, higher is better)",
}
CHECK_TEXT = {
    "mprt": "MPRT", "smprt": "sMPRT", "emprt": "eMPRT", "random_logit": "random logit",
    "mprt_invariant_mask": "MPRT on the non-invariant pixels (§5 (1))",
    "mprt_non_baseline": "MPRT of the non-baseline component (§5 (2))",
}
_VARIANT = ["check", "score", "normalization", "absolute"]
_FAITH = ["faithfulness", "imputer", "kernel"]


# -- Kendall's tau-b of many rankings at once ------------------------------------------------------
def tau_b(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Kendall's τ-b between ``first[..., m]`` and ``second[..., m]`` over the last axis (the items),
    broadcasting the rest; an item with a NaN value on either side is left out; NaN where a ranking
    has no order (all tied)."""
    i, j = np.triu_indices(first.shape[-1], k=1)
    sx, vx = _signs(first[..., j] - first[..., i])
    sy, vy = _signs(second[..., j] - second[..., i])
    with np.errstate(invalid="ignore", divide="ignore"):
        return (sx * sy).sum(-1) / np.sqrt((sx * sx * vy).sum(-1) * (sy * sy * vx).sum(-1))


def _signs(differences: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Signs of pair differences (0 where undefined) and whether the pair is defined (both items have values)."""
    valid = np.isfinite(differences)
    return np.where(valid, np.sign(np.where(valid, differences, 0.0)), 0.0), valid.astype(np.float64)


def pair_signs(goodness: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[..., methods, B] -> ([..., pairs, B] sign of goodness[j] − goodness[i] for every pair i < j,
    [..., pairs, B] 1 where both methods have a value)."""
    i, j = np.triu_indices(goodness.shape[-2], k=1)
    return _signs(goodness[..., j, :] - goodness[..., i, :])


def tau_matrix(check: tuple[np.ndarray, np.ndarray], faith: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """τ-b of every check × faithfulness pair from :func:`pair_signs` of both sides ([C, P, B] and
    [F, P, B]) -> [C, F, B]. A pair of methods counts only where both sides have both methods'
    values; NaN where one side has no order."""
    (sx, vx), (sy, vy) = check, faith
    numerator = np.einsum("cpb,fpb->cfb", sx, sy)
    untied_x = np.einsum("cpb,fpb->cfb", sx * sx, vy)
    untied_y = np.einsum("cpb,fpb->cfb", vx, sy * sy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return numerator / np.sqrt(untied_x * untied_y)


@dataclass(frozen=True)
class Agreement:
    tau: np.ndarray  # [C, F] τ-b of the rankings by the means over all images
    ci_low: np.ndarray  # [C, F]
    ci_high: np.ndarray  # [C, F]


def bootstrap_agreement(check: np.ndarray, faith: np.ndarray, settings: BootstrapSettings) -> Agreement:
    """τ-b between every check ranking and every faithfulness ranking, with a paired percentile bootstrap CI.

    ``check`` [C, M, I] and ``faith`` [F, M, I] are *goodness* values (higher ranks a method first) of
    M methods on I images (NaN = no value). Each resample draws I images with replacement (seeded by
    ``settings.seed`` and I, so the same images give the same resamples), recomputes every method's
    mean on both sides and τ-b between the rankings.
    """
    values = np.concatenate([check, faith])
    groups, methods, images = values.shape
    finite = np.isfinite(values).reshape(-1, images)
    filled = np.where(finite, values.reshape(-1, images), 0.0)
    weights = finite.astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = (filled.sum(1) / weights.sum(1)).reshape(groups, methods)
    point = tau_b(full[: len(check), None, :], full[None, len(check):, :])
    rng = np.random.default_rng([settings.seed, images])
    block = max(1, 4_000_000 // max(images, 1))
    taus = []
    for start in range(0, settings.resamples, block):
        rows = min(block, settings.resamples - start)
        counts = resample_counts(rng.integers(0, images, size=(rows, images)), images).T  # [I, B]
        with np.errstate(invalid="ignore", divide="ignore"):
            means = ((filled @ counts) / (weights @ counts)).reshape(groups, methods, rows)
        signs, valid = pair_signs(means)
        taus.append(tau_matrix((signs[: len(check)], valid[: len(check)]), (signs[len(check):], valid[len(check):])))
    resampled = np.concatenate(taus, axis=-1)
    tail = (1 - settings.confidence) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN pair: CI NaN
        low, high = np.nanpercentile(resampled, [tail, 100 - tail], axis=-1)
    return Agreement(point, low, high)


# -- per-image values from the run's tables ----------------------------------------------------------
def check_values(results: Any) -> pd.DataFrame:
    """One row per model, dataset, check variant, method and image: the check's value, mean over seeds and stages."""
    pieces = []
    if results.count("randomization"):
        pieces.append(results.sql(
            """SELECT model, dataset, 'mprt' AS "check", metric AS score, normalization, absolute, method, image_id,
                      avg(value) FILTER (WHERE NOT isnan(value)) AS value
               FROM randomization GROUP BY ALL""").to_pandas())
    if results.count("check_scores"):
        pieces.append(results.sql(
            """SELECT model, dataset, "check", score, normalization, absolute, method, image_id,
                      avg(value) FILTER (WHERE NOT isnan(value)) AS value
               FROM check_scores GROUP BY ALL""").to_pandas())
    if not pieces:
        return pd.DataFrame(columns=["model", "dataset", *_VARIANT, "method", "image_id", "value"])
    return pd.concat(pieces, ignore_index=True)


def faithfulness_values(results: Any) -> pd.DataFrame:
    """One row per model, dataset, faithfulness score (mif, lif, srg), imputer, kernel, method and image."""
    if not results.count("occlusion"):
        return pd.DataFrame(columns=["model", "dataset", *_FAITH, "method", "image_id", "value"])
    return results.sql(
        """WITH curves AS (
               SELECT model, dataset, imputer, kernel, method, image_id,
                      avg(auc) FILTER (WHERE "order" = 'mif') AS mif, avg(auc) FILTER (WHERE "order" = 'lif') AS lif
               FROM occlusion GROUP BY ALL)
           SELECT * FROM (SELECT *, lif - mif AS srg FROM curves)
           UNPIVOT (value FOR faithfulness IN (mif, lif, srg))"""
    ).to_pandas()


# -- which methods are ranked -------------------------------------------------------------------------
def method_roles(manifest: dict) -> tuple[set[str], dict[str, str]]:
    """The noise baseline's ids, and each LRP method seeded with 1 -> its twin seeded with the logit
    (the same settings otherwise), from the job in the manifest."""
    from pydantic import TypeAdapter

    from ..config.spec import MethodSpec

    adapter = TypeAdapter(MethodSpec)
    noise, one, logit = set(), {}, {}
    for raw in manifest.get("spec", {}).get("methods", []):
        try:
            method = adapter.validate_python(raw)
        except Exception:  # a registered method of another process: neither noise nor LRP
            continue
        if method.name == "noise":
            noise.add(method.method_id)
        elif method.name == "lrp":
            key = repr(method.model_dump(exclude={"label", "output_relevance"}))
            (logit if method.output_relevance == "logit" else one)[key] = method.method_id
    return noise, {one[key]: logit[key] for key in one if key in logit}


@dataclass(frozen=True)
class MethodSet:
    with_noise: bool
    lrp_seed: str  # 'one' or 'logit'
    names: dict[str, str]  # ranked name -> the method whose values it takes


def method_sets(methods: list[str], noise: set[str], twins: dict[str, str]) -> list[MethodSet]:
    logit_twins = set(twins.values())
    base = [m for m in methods if m not in logit_twins]
    sets = []
    for seed in ("one", "logit") if any(m in twins and twins[m] in methods for m in base) else ("one",):
        for with_noise in (True, False):
            names = {m: (twins.get(m, m) if seed == "logit" and twins.get(m) in methods else m)
                     for m in base if with_noise or m not in noise}
            if len(names) >= 2 and (with_noise or any(m in noise for m in base)):
                sets.append(MethodSet(with_noise, seed, names))
    return sets


# -- the table ----------------------------------------------------------------------------------------
def agreement_table(results: Any, settings: BootstrapSettings = BootstrapSettings()) -> pd.DataFrame:
    """The agreement table of a run (empty when it lacks checks or occlusion curves)."""
    checks, faith = check_values(results), faithfulness_values(results)
    noise, twins = method_roles(results.manifest)
    pieces = []
    for (model, dataset), check in checks.groupby(["model", "dataset"]):
        occlusion = faith[(faith.model == model) & (faith.dataset == dataset)]
        if occlusion.empty:
            continue
        rows = _one_model(check, occlusion, noise, twins, settings)
        if len(rows):  # none when fewer than two methods are ranked
            pieces.append(rows.assign(model=model, dataset=dataset))
    if not pieces:
        return pd.DataFrame()
    table = pd.concat(pieces, ignore_index=True)
    table["ci_includes_zero"] = (table.ci_low <= 0) & (table.ci_high >= 0)
    table["headline"] = False
    for _, group in table.groupby(["model", "dataset"]):
        main = group[group.varied.isna() & group.with_noise & (group.check == "mprt")]
        chosen = main[(main.score == HEADLINE) & (main.faithfulness == "mif") & ~main.absolute.astype(bool)]
        chosen = chosen.sort_values(["imputer", "kernel"], ascending=[True, False])  # blur first, largest kernel
        table.loc[chosen.index[:1], "headline"] = True
    return table


def _one_model(check: pd.DataFrame, faith: pd.DataFrame, noise: set[str], twins: dict[str, str],
               settings: BootstrapSettings) -> pd.DataFrame:
    check = check.assign(normalization=check.normalization.fillna(""))
    normalizations = set(check.normalization) - {""}
    default = DEFAULT_NORMALIZATION if DEFAULT_NORMALIZATION in normalizations or not normalizations \
        else sorted(normalizations)[0]
    methods = sorted(set(check.method) & set(faith.method))
    images = sorted(set(check.image_id) | set(faith.image_id))
    check_wide = _wide(check, _VARIANT, images)
    faith_wide = _wide(faith, _FAITH, images)
    unknown = sorted({s for s in check_wide.index.get_level_values("score") if s not in SCORES})
    if unknown:
        warnings.warn(f"agreement: no direction known for {', '.join(unknown)} (not registered in this process); "
                      "left out", stacklevel=2)
    variants = check_wide.index.droplevel("method").unique()
    variants = variants[[s in SCORES for s in variants.get_level_values("score")]]
    faith_keys = faith_wide.index.droplevel("method").unique()
    rows = []
    for chosen in method_sets(methods, noise, twins):
        ranked = list(chosen.names)
        sources = [chosen.names[m] for m in ranked]
        check_cube = _cube(check_wide, variants, sources, images) * _directions(
            [SCORES[s].better for s in variants.get_level_values("score")])
        faith_cube = _cube(faith_wide, faith_keys, sources, images) * _directions(
            [FAITHFULNESS[f] for f in faith_keys.get_level_values("faithfulness")])
        agreement = bootstrap_agreement(check_cube, faith_cube, settings)
        counts = np.isfinite(check_cube).any(1).sum(-1)
        # methods ranked on both sides: the check's variant may cover only some (the §5 (2) split: LRP only)
        check_has, faith_has = np.isfinite(check_cube).any(-1), np.isfinite(faith_cube).any(-1)
        for c, variant in enumerate(variants):
            key = dict(zip(_VARIANT, variant))
            varied = _varied(key, default, chosen.lrp_seed)
            if varied == "skip":
                continue
            for f, faith_key in enumerate(faith_keys):
                both = check_has[c] & faith_has[f]
                rows.append({**key, **dict(zip(_FAITH, faith_key)), "with_noise": chosen.with_noise,
                             "lrp_seed": chosen.lrp_seed, "varied": varied, "methods": int(both.sum()),
                             "method_list": [m for m, kept in zip(ranked, both) if kept], "images": int(counts[c]),
                             "tau": agreement.tau[c, f], "ci_low": agreement.ci_low[c, f],
                             "ci_high": agreement.ci_high[c, f],
                             "p_value": kendall_tau(_means(check_cube[c])[both], _means(faith_cube[f])[both])[1]})
    frame = pd.DataFrame(rows)
    if not frame.empty:  # a variant that ranks fewer than two methods (the §5 (2) split of one LRP method): no row
        frame = frame[frame.methods >= 2].reset_index(drop=True)
        frame["normalization"] = frame.normalization.replace("", None)
    return frame


def _directions(better: list[str]) -> np.ndarray:
    """[V, 1, 1]: +1 where a high value ranks a method first, −1 where a low one does (values become goodness)."""
    return np.array([1.0 if b == "higher" else -1.0 for b in better])[:, None, None]


def _means(values: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=-1)


def _varied(key: dict, default: str, lrp_seed: str) -> str | None:
    """Which single choice this row changes from the default (None: a main row); 'skip' for two at once."""
    changed = []
    if key["normalization"] not in ("", default):
        changed.append("normalization")
    if key["absolute"]:
        changed.append("absolute")
    if lrp_seed == "logit":
        changed.append("lrp_seed")
    if len(changed) > 1:
        return "skip"
    if changed == ["absolute"] and key["check"] == "mprt":
        return None  # the plain check on absolute maps is one of the main variants (issue 13, item 6)
    return changed[0] if changed else None


def _wide(frame: pd.DataFrame, keys: list[str], images: list[str]) -> pd.DataFrame:
    wide = frame.set_index(keys + ["method", "image_id"])["value"].astype(np.float64).unstack("image_id")
    return wide.reindex(columns=images)


def _cube(wide: pd.DataFrame, variants: pd.Index, methods: list[str], images: list[str]) -> np.ndarray:
    """[variants, methods, images] from a wide frame indexed by variant keys + method (NaN where absent)."""
    index = pd.MultiIndex.from_tuples([(*(v if isinstance(v, tuple) else (v,)), m) for v in variants for m in methods],
                                      names=wide.index.names)
    return wide.reindex(index).to_numpy(np.float64).reshape(len(variants), len(methods), len(images))


# -- words ----------------------------------------------------------------------------------------------
def describe_variant(row: Any, details: bool = True) -> str:
    """'MPRT SSIM (second_moment, signed)' for a row of the table ('MPRT SSIM' without ``details``)."""
    score = SCORES[row.score].axis_label if row.score in SCORES else row.score
    text = CHECK_TEXT.get(row.check, row.check) + ("" if row.check == "emprt" else f" {score}")
    if not details:
        return text
    details = [] if _missing(row.normalization) else [str(row.normalization)]
    details.append("absolute" if row.absolute else "signed")
    return f"{text} ({', '.join(details)})"


def verdict(row: Any) -> str:
    """τ with its CI and what it says, in words; plain about a CI that includes 0."""
    if _missing(row.tau):
        return "τ undefined (a ranking without any order)"
    shown = f"τ = {row.tau:+.2f}"
    if _missing(row.ci_low):
        return shown + " (no CI)"
    shown += f" [{row.ci_low:+.2f}, {row.ci_high:+.2f}]"
    if row.ci_low <= 0 <= row.ci_high:
        return shown + ": the CI includes 0, so these images do not show whether the check agrees with faithfulness"
    if row.ci_high < 0:
        return shown + ": the check ranks methods against their faithfulness (the paper's gap)"
    return shown + ": the check ranks methods with their faithfulness"


def headline_sentences(table: pd.DataFrame) -> list[str]:
    if table is None or len(table) == 0:
        return []
    lines = []
    for row in table[table.headline.astype(bool)].itertuples(index=False):
        lines.append(
            f"{row.model} · {row.dataset}: {describe_variant(row)} vs. occlusion {row.faithfulness.upper()} "
            f"({row.imputer} imputer, {row.kernel}×{row.kernel} tiles), {row.methods} methods with the noise "
            f"baseline, {row.images} images: {verdict(row)}."
        )
        main = table[(table.model == row.model) & (table.dataset == row.dataset) & table.varied.isna()
                     & table.tau.notna()]
        if len(main):
            zero = int(main.ci_includes_zero.sum())
            lines.append(f"{row.model} · {row.dataset}: the 95 % CI of τ includes 0 in {zero} of {len(main)} main "
                         f"rows (check variant × faithfulness score × imputer × tile size, with and without noise).")
    return lines


def agreement_grid(table: pd.DataFrame, with_noise: bool = True) -> pd.DataFrame:
    """Main rows as a grid: one row per check variant, one column per faithfulness score and imputer
    (largest tile size), cells 'τ [low, high]' with '*' where the CI excludes 0."""
    main = table[table.varied.isna() & (table.with_noise == with_noise)]
    if main.empty:
        return pd.DataFrame()
    kernel = main.kernel.max()
    main = main[main.kernel == kernel]
    cells = main.assign(
        variant=[describe_variant(r) for r in main.itertuples(index=False)],
        column=[f"{f.upper()} {i} k={kernel}" for f, i in zip(main.faithfulness, main.imputer)],
        cell=[_cell(r) for r in main.itertuples(index=False)],
    )
    grid = cells.pivot_table(index=["model", "dataset", "variant"], columns="column", values="cell", aggfunc="first")
    order = [f"{f.upper()} {i} k={kernel}" for i in ("blur", "mean") for f in FAITHFULNESS]
    grid = grid[[c for c in order if c in grid.columns] + [c for c in grid.columns if c not in order]].reset_index()
    grid.columns.name = None
    return grid


def sensitivity_grid(table: pd.DataFrame) -> pd.DataFrame:
    """One row per check and score: τ against MIF (blurred copy where present, largest tile size, with
    the noise baseline) under the default choices and with each single choice changed."""
    rows = table[table.with_noise.astype(bool) & (table.faithfulness == "mif")]
    if rows.empty:
        return pd.DataFrame()
    imputer = "blur" if (rows.imputer == "blur").any() else sorted(rows.imputer)[0]
    rows = rows[(rows.imputer == imputer) & (rows.kernel == rows.kernel.max())]
    main = rows.varied.isna()
    columns = {"default": main & ~rows.absolute.astype(bool)}
    for normalization in sorted(set(rows[rows.varied == "normalization"].normalization)):
        columns[f"{normalization} normalization"] = (rows.varied == "normalization") & (rows.normalization == normalization)
    columns["absolute maps"] = (rows.varied == "absolute") | (main & rows.absolute.astype(bool))
    columns["LRP seeded with the logit"] = rows.varied == "lrp_seed"
    grid = []
    for (model, dataset, check, score), group in rows.groupby(["model", "dataset", "check", "score"]):
        line = {"model": model, "dataset": dataset, "check variant": describe_variant(group.iloc[0], details=False)}
        for name, chosen in columns.items():
            found = group[chosen.loc[group.index]]
            line[name] = _cell(found.iloc[0]) if len(found) else "—"
        grid.append(line)
    return pd.DataFrame(grid)


def _cell(row: Any) -> str:
    if _missing(row.tau):
        return "n/a"
    if _missing(row.ci_low):
        return f"{row.tau:+.2f}"
    star = "" if row.ci_low <= 0 <= row.ci_high else " *"
    return f"{row.tau:+.2f} [{row.ci_low:+.2f}, {row.ci_high:+.2f}]{star}"


def _missing(value: Any) -> bool:
    return value is None or value is pd.NA or (isinstance(value, float) and np.isnan(value))


__all__ = ["Agreement", "agreement_grid", "agreement_table", "bootstrap_agreement", "headline_sentences",
           "sensitivity_grid", "tau_b", "verdict"]
