"""Outputs with hand-made numbers, written through the real manifest and shard writers, so
that aggregates, rankings and figures can be checked against values known in advance."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from benchmark.config import validate_job
from benchmark.engine.manifest import new_manifest
from benchmark.results import OutputStore, ShardWriter, validate_manifest

from ..engine.jobs import TINY

QUANTILE_LEVELS = [round(0.95 - 0.05 * i, 2) for i in range(18)]


def write_manifest(store: OutputStore, shards: list[int], images_per_shard: int, stages: int = 2,
                   spec: dict = TINY, **changes) -> dict:
    job = validate_job(spec)
    manifest = new_manifest(
        job,
        dataset={"kind": job.dataset.kind, "count": len(shards) * images_per_shard},
        weights="random (test)",
        shard_plan={
            "shard_size": images_per_shard,
            "images": len(shards) * images_per_shard,
            "shards": [{"shard": s, "start": s * images_per_shard, "stop": (s + 1) * images_per_shard} for s in shards],
        },
        randomization_plan={"mode": "top_down", "stages": [{"stage": s, "modules": [f"layer{s}"]} for s in range(1, stages + 1)]},
    )
    manifest.update(changes)
    validate_manifest(manifest)
    store.write_json("manifest.json", manifest)
    return manifest


def image_ids(shard: int, per_shard: int) -> list[str]:
    return [f"img-{shard * per_shard + i:03d}" for i in range(per_shard)]


def randomization_rows(
    images: list[str], shard: int, methods: list[str], stages: list[int], value: Callable[..., float],
    seeds: list[int] = (0,), metrics: list[str] = ("ssim", "mse", "spearman"),
    normalizations: list[str] = ("second_moment",), absolute: list[bool] = (False,),
) -> pa.Table:
    """``value(method, stage, image, seed, metric, normalization, absolute)`` for every grid cell."""
    rows = []
    for method, seed, stage, metric, normalization, is_abs, image in itertools.product(
        methods, seeds, stages, metrics, normalizations, absolute, images
    ):
        number = float(value(method=method, stage=stage, image=image, seed=seed, metric=metric,
                             normalization=normalization, absolute=is_abs))
        rows.append({
            "image_id": image, "method": method, "reduction": "sum", "seed": seed, "mode": "top_down",
            "stage": stage, "layers": [f"layer{stage}"], "target": 1, "metric": metric,
            "normalization": normalization, "absolute": is_abs, "value": number,
            "bound": None if metric == "spearman" else number / 2, "shard": shard,
        })
    frame = pd.DataFrame(rows)
    table = pa.Table.from_pandas(frame.drop(columns="value"), preserve_index=False)
    return table.append_column("value", pa.array(frame.value.to_numpy(np.float64)))  # NaN stays NaN, not null


def occlusion_rows(images: list[str], shard: int, methods: list[str], kernels: list[int],
                   curve: Callable[..., np.ndarray]) -> pa.Table:
    rows = []
    for method, kernel, image in itertools.product(methods, kernels, images):
        points = np.asarray(curve(method=method, kernel=kernel, image=image), dtype=np.float32)
        rows.append({
            "image_id": image, "method": method, "reduction": "sum", "target": 1, "kernel": kernel,
            "curve": points.tolist(), "logit_curve": (points * 10).tolist(), "auc": float(points.mean()),
            "aopc": float((points[0] - points).mean()), "shard": shard,
        })
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def activation_rows(images: list[str], shard: int, layers: int, nonpositive: Callable[..., float]) -> pa.Table:
    rows = []
    for index, image in itertools.product(range(layers), images):
        quantiles = np.linspace(2.0, -0.5, 18) * (index + 1)
        rows.append({
            "image_id": image, "layer": f"layer{index}", "layer_index": index, "levels": QUANTILE_LEVELS,
            "quantiles": quantiles.tolist(), "nonpositive": float(nonpositive(layer=index, image=image)), "shard": shard,
        })
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def logit_rows(images: list[str], shard: int, stages: list[int], seeds: list[int] = (0,), classes: int = 20,
               vectors: bool = True) -> pa.Table:
    rows = []
    for seed, stage, image in itertools.product(seeds, stages, images):
        rng = np.random.default_rng([seed, stage, int(image.split("-")[1])])
        before = rng.normal(size=classes)
        after = before * (1 - 0.2 * stage) + rng.normal(scale=0.3, size=classes)
        rows.append({
            "image_id": image, "seed": seed, "mode": "top_down", "stage": stage, "layers": [f"layer{stage}"],
            "target": 1, "pearson": float(np.corrcoef(before, after)[0, 1]), "spearman": 0.5,
            "logits_before": before.astype(np.float32).tolist() if vectors else None,
            "logits_after": after.astype(np.float32).tolist() if vectors else None, "shard": shard,
        })
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def skip_path_rows(images: list[str], shard: int, seeds: list[int] = (0, 1), method: str = "lrp") -> pa.Table:
    """Trained (stage 0, seed null) and one randomized stage per seed; skip keeps ~0.8 of the relevance."""
    rows = []
    states = [(None, 0)] + [(seed, 1) for seed in seeds]
    for (seed, stage), image in itertools.product(states, images):
        number = int(image.split("-")[1])
        skip = 0.8 + 0.01 * number - 0.05 * stage + 0.001 * (seed or 0)
        for component, share in (("skip", skip), ("residual", 1 - skip), ("total", 1.0)):
            similar = None if stage == 0 else {"skip": 0.9, "residual": 0.2, "total": 0.7}[component] + 0.01 * number
            rows.append({
                "image_id": image, "method": method, "block": "layer4.2", "seed": seed, "stage": stage,
                "component": component, "relevance": 2.0 * share, "share": share, "ssim": similar,
                "spearman": None if similar is None else similar - 0.1, "shard": shard,
            })
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def kept_features_rows(images: list[str], shard: int, seeds: list[int] = (0, 1)) -> pa.Table:
    rows = []
    states = [(None, 0)] + [(seed, 1) for seed in seeds]
    for (seed, stage), image, (metric, absolute) in itertools.product(
            states, images, [("ssim", False), ("ssim", True), ("spearman", False)]):
        value = 0.6 - 0.2 * stage + 0.01 * int(image.split("-")[1]) + 0.002 * (seed or 0) + 0.1 * absolute
        rows.append({
            "image_id": image, "method": "lrp", "layer": "layer3", "seed": seed, "stage": stage, "metric": metric,
            "normalization": "second_moment", "absolute": absolute, "value": value, "shard": shard,
        })
    return pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)


def fake_output(folder: Path, shards: int = 2, per_shard: int = 4, commit: list[int] | None = None,
                tables: Callable[[list[str], int], dict[str, pa.Table]] | None = None,
                partition: dict[str, str] | None = None, stages: int = 2) -> Path:
    """An output of ``shards`` planned shards whose ``commit`` shards hold ``tables(images, shard)``."""
    store = OutputStore(str(folder))
    manifest = write_manifest(store, list(range(shards)), per_shard, stages)
    writer = ShardWriter(store, partition or {"model": "resnet34", "dataset": "synthetic"})
    for shard in range(shards) if commit is None else commit:
        images = image_ids(shard, per_shard)
        produced = tables(images, shard) if tables else {}
        produced["shards"] = shards_row(shard, len(images))
        writer.commit(shard, produced, {"spec_hash": manifest["spec_hash"]})
    return folder


def shards_row(shard: int, images: int) -> pa.Table:
    return pa.table({
        "shard": [shard], "images": [images], "errors": [0], "seconds": [1.5], "worker": ["test"], "device": ["cpu"],
        "attempt": [1], "finished_at": pa.array([pd.Timestamp("2025-01-01", tz="UTC")], pa.timestamp("ms", tz="UTC")),
    })
