"""``benchmark report``: one self-contained HTML page of a run.

The page reads like a paper's appendix: a table of contents, the agreement table first (every
check variant against every faithfulness score, Kendall's τ with bootstrap CIs:
``benchmark.results.agreement``), the run (what, where, how long), the paper's gap as one number (Kendall's tau between the randomization check's ranking and the
faithfulness ranking), the rankings, every figure numbered with its caption (embedded as compact
PNG data URIs, so the file can be mailed or archived alone), the aggregate tables (wide ones
scroll sideways, long ones are collapsed), the images that could not be read and why, and the
manifest. No scripts, no external resources; every text from the data is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from ..metrics.scores import AUC, label
from .agreement import agreement_grid, headline_sentences, sensitivity_grid
from .errors import load_failures
from .plots import PaperFigure
from .query import Results
from .store import REPORT
from .summary import untrained_warning

MAX_ERROR_ROWS = 500
OPEN_ROWS = 15  # tables longer than this are collapsed (<details>)
SECTIONS = (
    ("agreement", "The gap, honestly: randomization checks vs. faithfulness"), ("run", "Run"), ("gap", "The gap: randomization check vs. faithfulness"), ("rankings", "Method rankings"),
    ("figures", "Figures"), ("sign_flips", "Sign flips of the explained logit"), ("tables", "Aggregate tables"),
    ("errors", "Errors"), ("manifest", "Manifest"),
)

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:1200px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
.sub{color:#666;margin-top:0} .warn{background:#fff4e5;border-left:4px solid #f0a020;padding:.6rem 1rem;margin:1rem 0}
.gap{background:#eef5ff;border-left:4px solid #3a7bd5;padding:.6rem 1rem;margin:1rem 0;font-size:1.05rem}
table.data{border-collapse:collapse;font-size:.82rem;margin:.6rem 0} table.data td,table.data th{border:1px solid #ddd;padding:2px 6px;text-align:right}
table.data th{background:#f4f4f4} table.data td:first-child,table.data th:first-child{text-align:left}
table.kv td{padding:2px 10px 2px 0;vertical-align:top;font-size:.9rem} table.kv td:first-child{color:#666;white-space:nowrap}
figure{margin:1.5rem 0;page-break-inside:avoid} figure img{max-width:100%;border:1px solid #eee}
figcaption{font-size:.88rem;color:#444;max-width:900px} code,pre{font-size:.8rem} pre{background:#f7f7f7;padding:.8rem;overflow:auto;max-height:30rem}
table.errors td{white-space:pre-wrap;text-align:left;font-family:monospace;min-width:12rem} details{margin:.6rem 0} summary{cursor:pointer;color:#3a7bd5}
.scroll{overflow-x:auto;max-width:100%} table.kv{table-layout:fixed;width:100%} table.kv td{overflow-wrap:anywhere} table.kv td:first-child{width:11rem}
nav.toc{background:#f7f7f7;border:1px solid #e4e4e4;padding:.4rem 1.2rem;margin:1rem 0;font-size:.92rem}
nav.toc ol{margin:.3rem 0;padding-left:1.4rem} nav.toc ol ol{font-size:.85rem;columns:2;column-gap:2rem}
figcaption b{color:#222} h2 .num,figcaption .num{color:#888;font-weight:normal;margin-right:.4rem}
"""


def gap_sentences(agreement: pa.Table | pd.DataFrame | None) -> list[str]:
    """The headline rows of ``rank_agreement`` as sentences (plain text)."""
    if agreement is None:
        return []
    frame = agreement.to_pandas() if isinstance(agreement, pa.Table) else agreement
    lines = []
    for row in frame[frame.headline].itertuples(index=False):
        tau = row.tau
        if tau is None or (isinstance(tau, float) and math.isnan(tau)):
            verdict, shown = "undefined (too few methods, or a ranking without any order)", "n/a"
        else:
            shown = f"{tau:+.2f} (p = {row.p_value:.3g}, {row.methods} methods)"
            verdict = (
                "the check ranks methods roughly opposite to their faithfulness: the paper's gap" if tau <= -0.3
                else "the two rankings are largely unrelated" if tau < 0.3
                else "the check ranks methods much like their faithfulness"
            )
        lines.append(
            f"{row.model} · {row.dataset}: Kendall's τ = {shown} between the ranking by the randomization check "
            f"({row.metric.upper()}, {row.normalization} normalization, {'absolute' if row.absolute else 'signed'} maps, "
            f"mean over stages) and the ranking by occlusion faithfulness ({row.faithfulness_metric}, kernel {row.kernel}); "
            f"{verdict}."
        )
    return lines


def build_report(
    results: Results,
    aggregates: dict[str, pa.Table],
    figures: list[PaperFigure],
    aggregates_meta: dict[str, Any] | None = None,
) -> str:
    """The whole page as one string."""
    manifest = results.manifest
    shown = [figure for figure in figures if figure.png is not None]
    bodies = {
        "agreement": _agreement(aggregates),
        "run": _run_summary(results, aggregates_meta),
        "gap": _gap(aggregates),
        "rankings": _rankings(aggregates),
        "figures": _figures(shown),
        "sign_flips": _sign_flips(aggregates),
        "tables": _aggregate_tables(aggregates),
        "errors": _errors(results),
        "manifest": [f"<details><summary>manifest.json</summary><pre>"
                     f"{_e(json.dumps(manifest, indent=2, default=str))}</pre></details>"],
    }
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(manifest.get('name', 'run'))} · benchmark report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>Run {_e(manifest.get('name', '?'))}</h1>",
        f'<p class="sub">{_e(results.out)} · report generated {_e(_time(dt.datetime.now().timestamp()))}</p>',
    ]
    parts += _warnings(results, aggregates_meta)
    parts += _contents(shown)
    for number, (anchor, title) in enumerate(SECTIONS, start=1):
        parts.append(f'<h2 id="{anchor}"><span class="num">{number}</span>{_e(title)}</h2>')
        parts += bodies[anchor]
    parts.append("</body></html>")
    return "\n".join(parts)


def _contents(figures: list[PaperFigure]) -> list[str]:
    items = []
    for anchor, title in SECTIONS:
        item = f'<li><a href="#{anchor}">{_e(title)}</a>'
        if anchor == "figures" and figures:
            item += "<ol>" + "".join(f'<li><a href="#{_e(figure.name)}">{_e(figure.title)}</a></li>'
                                     for figure in figures) + "</ol>"
        items.append(item + "</li>")
    return [f'<nav class="toc"><b>Contents</b><ol>{"".join(items)}</ol></nav>']


def write_report(results: Results, html_text: str) -> str:
    results.store.write_bytes(REPORT, html_text.encode("utf-8"))
    return results.store.display(REPORT)


# -- sections ------------------------------------------------------------------------------------
def _warnings(results: Results, meta: dict[str, Any] | None) -> list[str]:
    notes = []
    if not results.complete:
        notes.append(f"Partial results: {results.state()}. Figures and tables cover the committed shards only; "
                     f"rerun `benchmark run` on this output to complete it.")
    if results.failed:
        notes.append(f"Failed shards: {', '.join(map(str, sorted(results.failed)))} (see Errors).")
    if (untrained := untrained_warning(results.manifest)) is not None:
        notes.append(untrained[len("warning: "):].capitalize() + " (heat maps are labelled 'untrained').")
    return [f'<div class="warn">{_e(note)}</div>' for note in notes]


def _run_summary(results: Results, meta: dict[str, Any] | None) -> list[str]:
    m = results.manifest
    spec = m.get("spec", {})
    versions = m.get("versions", {})
    stages = m.get("randomization_plan", {}).get("stages", [])
    shards = results.sql("SELECT coalesce(sum(images), 0) AS images, coalesce(sum(errors), 0) AS errors, "
                         "coalesce(sum(seconds), 0) AS seconds, string_agg(DISTINCT device, ', ') AS devices FROM shards"
                         ).to_pylist()[0]
    methods = ", ".join(_method_label(method) for method in spec.get("methods", []))
    rows = [
        ("description", spec.get("description") or "—"),
        ("run id · spec hash", f"{m.get('run_id')} · {m.get('spec_hash')}"),
        ("model · weights", f"{spec.get('model', {}).get('name')} · {m.get('weights')}"),
        ("dataset", json.dumps(m.get("dataset", {}), default=str)),
        ("shards", f"{len(results.committed)} committed of {len(results.planned)} planned"
                   + (f", {len(results.failed)} failed" if results.failed else "")),
        ("images", f"{shards['images']} evaluated of {m.get('shard_plan', {}).get('images', '?')}, "
                   f"{shards['errors']} failed to load"),
        ("compute", f"{shards['seconds']:.1f} s over committed shards on {shards['devices'] or '—'}"),
        ("host", str(m.get("host"))),
        ("methods", methods),
        ("randomization", f"{spec.get('randomization', {}).get('mode')}, seeds {m.get('seeds')}, {len(stages)} stages: "
                          + "; ".join(f"{s['stage']}: {', '.join(s['modules'][:3])}{' …' if len(s['modules']) > 3 else ''}"
                                      for s in stages[:20]) + (" …" if len(stages) > 20 else "")),
        ("created · finished", f"{_time(m.get('created_at'))} · {_time(m.get('finished_at'))}"),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items())),
        ("results schema", f"v{m.get('schema_version')}"),
    ]
    if "cuda" in str(shards["devices"] or ""):  # tf32/fp32 is a choice on CUDA devices only
        rows.append(("precision", str(m.get("precision"))))
    if meta:
        boot = meta.get("bootstrap", {})
        rows.append(("aggregates", f"{_time(meta.get('created_at'))}; {boot.get('confidence', 0.95):.0%} CIs: percentile "
                                   f"bootstrap over images, {boot.get('resamples')} resamples, seed {boot.get('seed')}"))
    body = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in rows)
    return [f'<table class="kv">{body}</table>']


def _method_label(method: dict) -> str:
    settings = {k: v for k, v in method.items() if k not in ("name", "label") and v is not None}
    label = method.get("label") or method.get("name")
    return f"{label} ({', '.join(f'{k}={v}' for k, v in settings.items())})" if settings else str(label)


def _agreement(aggregates: dict[str, pa.Table]) -> list[str]:
    """The headline: Kendall's τ with bootstrap CIs between every check's and every faithfulness score's ranking."""
    table = aggregates.get("agreement")
    if table is None or not table.num_rows:
        return ["<p>Not available: needs randomization-check results and occlusion curves of the same methods.</p>"]
    frame = table.to_pandas()
    body = [f'<div class="gap">{_e(s)}</div>' for s in headline_sentences(frame)]
    body.append("<p>Kendall's τ-b between the method ranking by each check variant (mean over stages and seeds per "
                "image; a method ranks first when its map changes most) and by each occlusion faithfulness score, "
                "[95 % percentile bootstrap CI over images, both rankings recomputed per resample]; <b>*</b> marks a "
                "CI that excludes 0. Every other cell's CI includes 0: the images do not settle whether that check "
                "agrees with faithfulness. τ &gt; 0: the check orders methods as faithfulness does; τ &lt; 0: the "
                "other way round (the paper's gap). Largest tile size; all rows in "
                "<code>aggregates/agreement.csv</code>.</p>")
    for with_noise, title in ((True, "with the noise baseline"), (False, "without the noise baseline")):
        grid = agreement_grid(frame, with_noise)
        if len(grid):
            body.append(f"<h3>{_e(title)}</h3>")
            body.append(f'<div class="scroll">{_table(grid)}</div>')
    sensitivity = sensitivity_grid(frame)
    if len(sensitivity):
        body.append("<h3>Sensitivity: choices that are not about the explanation</h3>"
                    "<p>τ against MIF (blurred copy, largest tile size, with the noise baseline) under the default "
                    "choices (second-moment normalization, signed maps, LRP seeded with 1) and with one of them "
                    "changed: another normalization, absolute maps, every LRP method replaced by its twin seeded "
                    "with the logit (<code>_logit</code>). All rows: column <code>varied</code> of "
                    "<code>aggregates/agreement.csv</code>.</p>")
        body.append(f'<div class="scroll">{_table(sensitivity)}</div>')
    return body


def _gap(aggregates: dict[str, pa.Table]) -> list[str]:
    agreement = aggregates.get("rank_agreement")
    sentences = gap_sentences(agreement)
    if not sentences:
        return ["<p>Not available: needs both randomization and occlusion results.</p>"]
    body = [f'<div class="gap">{_e(s)}</div>' for s in sentences]
    frame = agreement.to_pandas()
    overall = frame[frame.stage.isna()].drop(columns=["stage", "headline"])
    body.append("<p>Kendall's τ-b for every variant (ranking by the mean over all stages; τ &gt; 0: the check agrees "
                "with faithfulness, τ &lt; 0: it ranks methods the other way round):</p>")
    body.append(_table_block("rank_agreement", overall))
    per_stage = frame[frame.stage.notna()]
    if len(per_stage):
        body.append(f'<details><summary>τ per stage ({len(per_stage)} rows)</summary><div class="scroll">'
                    f"{_table(per_stage.drop(columns=['headline']))}</div></details>")
    return body


def _rankings(aggregates: dict[str, pa.Table]) -> list[str]:
    rankings = aggregates.get("rankings")
    if rankings is None:
        return ["<p>No rankings.</p>"]
    frame = rankings.to_pandas()
    faithful = frame[(frame.check == "faithfulness") & (frame.metric == "auc")]
    columns = {f"occlusion auc k={int(k)}": g.set_index("method")["rank"] for k, g in faithful.groupby("kernel")}
    agreement = aggregates.get("rank_agreement")
    headline = agreement.to_pandas() if agreement is not None else pd.DataFrame()
    headline = headline[headline.headline] if len(headline) else headline
    checks = frame[frame.check == "randomization"]
    if len(headline):
        h = headline.iloc[0]
        checks = checks[(checks.metric == h.metric) & (checks.normalization == h.normalization)
                        & (checks.absolute == h.absolute) & (checks["mode"] == h["mode"])]
    elif len(checks):
        first = checks.iloc[0]
        checks = checks[(checks.metric == first.metric) & (checks.normalization == first.normalization)
                        & (checks.absolute == first.absolute)]
    for stage, group in checks.groupby(checks.stage.fillna(-1)):
        name = "check: mean over stages" if stage == -1 else f"check: stage {int(stage)}"
        columns[name] = group.set_index("method")["rank"]
    if not columns:
        return ["<p>No rankings.</p>"]
    table = pd.DataFrame(columns).rename_axis("method").reset_index()
    table = table.sort_values(list(columns)[0], na_position="last")
    what = "" if not len(checks) else (
        f" The check's ranks use {label(checks.iloc[0].metric)} ({checks.iloc[0].better} is better), "
        f"{checks.iloc[0].normalization} normalization, "
        f"{'absolute' if checks.iloc[0].absolute else 'signed'} maps; a method passes it by changing its map a lot."
    )
    return [f"<p>Rank 1 = best; ties share their average rank. Occlusion: {_e(AUC.label)}, {AUC.better} is "
            f"better.{_e(what)}</p>", _table_block("rankings", table)]


def _figures(figures: list[PaperFigure]) -> list[str]:
    if not figures:
        return ["<p>No figures (no aggregate could be drawn).</p>"]
    body = []
    for number, figure in enumerate(figures, start=1):
        source = "data:image/png;base64," + base64.b64encode(figure.png).decode("ascii")
        files = ", ".join(figure.files)
        body.append(
            f'<figure id="{_e(figure.name)}"><img src="{source}" alt="{_e(figure.title)}">'
            f'<figcaption><span class="num">Figure {number}.</span><b>{_e(figure.title)}.</b> {_e(figure.caption)} '
            f"<code>{_e(files)}</code></figcaption></figure>"
        )
    return body


AGGREGATE_TEXT = {
    "occlusion_scores": f"Mean softmax over the occlusion curve (auc, {AUC.better} is better) and AOPC per method and "
                        "kernel.",
    "occlusion_relative": "Each image's occlusion curve minus its random-order curve (the noise method), per step.",
    "activation_stats": "Fraction of non-positive activations per layer (supplement Fig. 10).",
    "logit_stats": "Correlation of all logits before and after randomizing each stage (paper Fig. 5).",
    "overtaking": "Cauchy overtaking probabilities per layer (supplement Fig. 7-9).",
    "skip_path_stats": "Relevance through the skip connection and the weighted branch, and each part's similarity "
                       "to the trained model's (paper Fig. 7).",
    "kept_features_stats": "Similarity of the kept layer's explanation to the output's (paper §4.1, Fig. 4).",
    "occlusion_curves": "The mean occlusion curves drawn in the occlusion figures.",
    "check_stats": "The repaired randomization checks (sMPRT, eMPRT, random logit, the paper's §5 refinements) per "
                   "check variant and stage, with each score's direction (docs/repaired-checks.md).",
    "sign_flip_stats": "Fraction of image × seed pairs whose explained logit changed sign, per stage.",
}


def _sign_flips(aggregates: dict[str, pa.Table]) -> list[str]:
    """Next to the randomization curves: how often the randomized model's explained logit changed sign."""
    flips = aggregates.get("sign_flip_stats")
    if flips is None:
        return ["<p>No randomized states.</p>"]
    frame = flips.to_pandas()
    frame["layers"] = frame["layers"].map(lambda modules: ", ".join(modules[:3]) + (" …" if len(modules) > 3 else "")
                                          if modules is not None else "—")
    shown = frame[["model", "dataset", "mode", "stage", "layers", "mean", "ci_low", "ci_high", "pairs", "flipped"]]
    return ["<p>Fraction of image × seed pairs whose explained logit has the opposite sign of the trained model's "
            "(mean over images, 95 % bootstrap CI). A map seeded with the logit (LRP with <code>output_relevance: "
            "logit</code>; gradient × input on bias-free ReLU networks) flips its sign with it, and a signed similarity "
            "reads the flip as a changed explanation (docs/lrp-seeding.md).</p>",
            _table_block("sign_flip_stats", shown.rename(columns={"mean": "fraction flipped"}))]


def _aggregate_tables(aggregates: dict[str, pa.Table]) -> list[str]:
    body = []
    stats = aggregates.get("randomization_stats")
    if stats is not None:
        frame = stats.to_pandas()
        paper = frame[(frame.normalization == "second_moment") & ~frame.absolute.astype(bool)]
        shown = paper if len(paper) else frame
        body.append(f"<h3>randomization_stats</h3><p>{len(shown)} of {len(frame)} rows (second-moment normalization, "
                    "signed maps); all rows in <code>aggregates/randomization_stats.csv</code>.</p>")
        body.append(_table_block("randomization_stats", shown.drop(columns=["layers"])))
    for name in ("occlusion_scores", "skip_path_stats", "kept_features_stats", "logit_stats", "check_stats",
                 "activation_stats", "overtaking", "occlusion_relative", "occlusion_curves"):
        table = aggregates.get(name)
        if table is not None and table.num_rows:
            frame = table.to_pandas()
            body.append(f"<h3>{_e(name)}</h3><p>{_e(AGGREGATE_TEXT.get(name, ''))} All rows in "
                        f"<code>aggregates/{_e(name)}.csv</code>.</p>")
            body.append(_table_block(name, frame.drop(columns=[c for c in ("levels", "quantiles_mean") if c in frame])))
    return body or ["<p>No aggregates.</p>"]


def _errors(results: Results) -> list[str]:
    errors = results.frame("errors", order_by=["shard", "where"])
    if errors.empty:
        return ["<p>No errors: every image was read and every shard committed.</p>"]
    body = []
    failures = load_failures(pa.Table.from_pandas(errors[["where", "image_id", "source", "reason"]],
                                                  preserve_index=False))
    if failures:
        count = sum(len(group.image_ids) for group in failures)
        body.append(f"<p>{count} image{'s' if count != 1 else ''} could not be read and are left out of every table "
                    "and figure (the run goes on without them):</p><ul>")
        for group in failures:
            ids = ", ".join(group.image_ids[:20]) + (f" … ({len(group.image_ids) - 20} more)" if len(group.image_ids) > 20 else "")
            body.append(f"<li><b>{len(group.image_ids)} × {_e(group.reason)}</b>: {_e(ids)}</li>")
        body.append("</ul>")
    shown = errors.head(MAX_ERROR_ROWS)
    note = f" (first {MAX_ERROR_ROWS} shown)" if len(errors) > MAX_ERROR_ROWS else ""
    body.append(f"<p>{len(errors)} error rows{note}.</p>")
    body.append(_table_block("errors", shown, classes="data errors"))
    return body


# -- helpers -------------------------------------------------------------------------------------
def _table_block(name: str, frame: pd.DataFrame, classes: str = "data") -> str:
    """A table in a sideways-scrolling box; collapsed when it is long."""
    block = f'<div class="scroll">{_table(frame, classes)}</div>'
    if len(frame) <= OPEN_ROWS:
        return block
    return f"<details><summary>{_e(name)}: {len(frame)} rows</summary>{block}</details>"


def _table(frame: pd.DataFrame, classes: str = "data") -> str:
    """An escaped HTML table; lists become comma-separated text, floats 4 significant digits."""
    frame = frame.copy()
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].map(_cell)
    return frame.to_html(index=False, border=0, classes=classes, na_rep="—", escape=True,
                         float_format=lambda v: f"{v:.4g}")


def _cell(value: Any) -> Any:
    if isinstance(value, (list, tuple, np.ndarray)):
        return ", ".join(str(v) for v in value)
    if value is None or value is pd.NA:
        return "—"
    return value


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(stamp: Any) -> str:
    if not isinstance(stamp, (int, float)):
        return "—"
    return dt.datetime.fromtimestamp(stamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
