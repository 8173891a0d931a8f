"""Fine-tuning on Ray Train: one ``TorchTrainer`` worker per GPU, DDP, the best validation epoch kept.

The driver indexes both splits (a malformed annotation file fails here, before any worker
starts), ships the records through the object store and collects the best checkpoint as
``<output>/best.pt``: a state dict that ``model.weights: <output>/best.pt`` loads for an
evaluation run (with the same ``model.name`` and the dataset's class count).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import Preprocess, dataset_from_spec, slice_records
from .spec import FinetuneSpec

CHECKPOINT_FILE = "model.pt"


@dataclass
class FinetuneResult:
    checkpoint: Path  # <output>/best.pt
    best_epoch: int
    best_map: float
    history: list[dict[str, Any]]
    errors: list[dict[str, str]]


def _datasets(spec: FinetuneSpec):
    """(train dataset, train records, val dataset, val records) of the spec."""
    num_classes = spec.num_classes()
    train_spec, val_spec = spec.train_dataset(), spec.dataset
    train = dataset_from_spec(train_spec, num_classes)
    val = dataset_from_spec(val_spec, num_classes)
    train_records = slice_records(train.index(), 0, train_spec.limit)
    val_records = slice_records(val.index(), val_spec.offset, val_spec.limit)
    return train, train_records, val, val_records


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """One Ray Train worker: DDP training, distributed validation, rank 0 reports the best checkpoint."""
    import ray
    import ray.train
    import ray.train.torch
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader

    from ..models.bundle import build_module
    from .data import MultiLabelImages, collate
    from .metrics import mean_average_precision

    spec = FinetuneSpec.model_validate(config["spec"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    num_classes = spec.num_classes()
    preprocess = Preprocess.from_spec(spec.dataset)
    train_records, val_records = ray.get(config["train_records"]), ray.get(config["val_records"])
    train_data = MultiLabelImages(dataset_from_spec(spec.train_dataset(), num_classes), train_records, preprocess, spec.hflip)
    val_data = MultiLabelImages(dataset_from_spec(spec.dataset, num_classes), val_records, preprocess, False)

    torch.manual_seed(spec.seed * 1000 + rank)
    per_worker = max(1, spec.batch_size // world)
    loader_options = dict(
        batch_size=per_worker, num_workers=spec.loader_workers, collate_fn=collate,
        persistent_workers=spec.loader_workers > 0, pin_memory=device.type == "cuda",
    )
    # BatchNorm cannot train on a batch of one: drop the last partial batch when there are full ones.
    drop_last = len(train_records) // world > per_worker
    train_loader = ray.train.torch.prepare_data_loader(
        DataLoader(train_data, shuffle=True, drop_last=drop_last, **loader_options), move_to_device=False
    )
    val_loader = ray.train.torch.prepare_data_loader(DataLoader(val_data, shuffle=False, **loader_options), move_to_device=False)

    module, weights_source = build_module(spec.job_spec())
    model = ray.train.torch.prepare_model(module)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay)
    loss_function = torch.nn.BCEWithLogitsLoss()
    history: list[dict[str, Any]] = []
    errors: dict[str, dict[str, str]] = {}
    best_map, best_epoch = -math.inf, 0

    for epoch in range(1, spec.epochs + 1):
        started = time.perf_counter()
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        model.train()
        loss_sum, seen = 0.0, 0
        for batch in train_loader:
            _note_errors(errors, batch.errors)
            if len(batch.indices) < 2:
                continue  # all unreadable, or a single image BatchNorm cannot normalize
            pixels, targets = batch.pixels.to(device, non_blocking=True), batch.targets.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_function(model(pixels), targets)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach()) * len(batch.indices)
            seen += len(batch.indices)

        model.eval()
        positions, scores, targets_seen = [], [], []
        with torch.no_grad():
            for batch in val_loader:
                _note_errors(errors, batch.errors)
                if len(batch.indices):
                    scores.append(model(batch.pixels.to(device)).float().cpu())
                    positions.append(batch.indices)
                    targets_seen.append(batch.targets)
        gathered = _gather(
            [
                torch.cat(positions) if positions else torch.zeros(0, dtype=torch.long),
                torch.cat(scores) if scores else torch.zeros(0, num_classes),
                torch.cat(targets_seen) if targets_seen else torch.zeros(0, num_classes),
                loss_sum,
                seen,
                errors,
            ],
            world,
        )
        val_positions = torch.cat([g[0] for g in gathered]).numpy()
        # the distributed sampler pads with repeats: keep each validation image once
        _, first = np.unique(val_positions, return_index=True)
        val_scores = torch.cat([g[1] for g in gathered]).numpy()[first]
        val_targets = torch.cat([g[2] for g in gathered]).numpy()[first]
        val_map = mean_average_precision(val_scores, val_targets)
        total_seen = sum(g[4] for g in gathered)
        for g in gathered:
            errors.update(g[5])
        entry = {
            "epoch": epoch,
            "train_loss": sum(g[3] for g in gathered) / max(1, total_seen),
            "train_images": total_seen,
            "val_map": val_map,
            "val_images": int(len(first)),
            "seconds": time.perf_counter() - started,
        }
        history.append(entry)
        score = -math.inf if math.isnan(val_map) else val_map  # NaN: no validation class has a positive
        improved = best_epoch == 0 or score > best_map
        if improved:
            best_map, best_epoch = score, epoch
        if rank == 0:  # sys.stdout, not print: Ray Train's patched print would show every line twice
            sys.stdout.write(
                f"epoch {epoch}/{spec.epochs}: train loss {entry['train_loss']:.4f} ({total_seen} images), "
                f"val mAP {val_map:.4f} ({entry['val_images']} images){'  best' if improved else ''}\n"
            )
            sys.stdout.flush()
        metrics = {**entry, "val_map": val_map if not math.isnan(val_map) else -1.0}
        if improved and rank == 0:
            unwrapped = model.module if isinstance(model, DistributedDataParallel) else model
            with tempfile.TemporaryDirectory() as folder:
                torch.save(
                    {
                        "model_state_dict": {k: v.detach().cpu() for k, v in unwrapped.state_dict().items()},
                        "architecture": spec.model.name,
                        "num_classes": num_classes,
                        "dataset": spec.dataset.kind,
                        "classes": train_data.dataset.class_names() or val_data.dataset.class_names(),
                        "epoch": epoch,
                        "val_map": val_map,
                        "crop": spec.dataset.crop,
                        "resize": preprocess.resize,
                        "started_from": weights_source,
                    },
                    os.path.join(folder, CHECKPOINT_FILE),
                )
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
        else:
            ray.train.report(metrics)
    return {"history": history, "best_epoch": best_epoch, "errors": sorted(errors.values(), key=lambda e: e["image_id"])}


def _note_errors(errors: dict[str, dict[str, str]], batch_errors: list) -> None:
    for error in batch_errors:
        errors[error.image_id] = {"image_id": error.image_id, "source": error.source, "reason": error.reason}


def _gather(payload: list, world: int) -> list[list]:
    """Every worker's payload, on every worker."""
    if world == 1 or not torch.distributed.is_initialized():
        return [payload]
    gathered: list = [None] * world
    torch.distributed.all_gather_object(gathered, payload)
    return gathered


def run_finetune(spec: FinetuneSpec, address: str | None = None) -> FinetuneResult:
    """Index, train on Ray Train, copy the best checkpoint to ``<output>/best.pt``; raises on failure."""
    import ray
    from ray.train import CheckpointConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from ..models.bundle import build_module

    output = Path(spec.output_dir()).expanduser().resolve()
    _, train_records, _, val_records = _datasets(spec)  # malformed annotations fail here, before any work
    if not train_records or not val_records:
        raise ValueError(f"fine-tuning needs images in both splits: {len(train_records)} train, {len(val_records)} val")
    if spec.model.weights != "random":
        build_module(spec.job_spec())  # missing pretrained weights fail here, with where to put them
    output.mkdir(parents=True, exist_ok=True)
    if not ray.is_initialized():
        ray.init(address=address)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    use_gpu = spec.use_gpu if spec.use_gpu is not None else gpus > 0
    workers = spec.workers or (max(1, gpus) if use_gpu else 1)
    storage = spec.storage_path or str(output / "ray")
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "spec": spec.model_dump(mode="json"),
            "train_records": ray.put(train_records),
            "val_records": ray.put(val_records),
        },
        scaling_config=ScalingConfig(
            num_workers=workers, use_gpu=use_gpu, resources_per_worker={"CPU": spec.cpus_per_worker}
        ),
        run_config=RunConfig(
            name=f"{spec.name}-{spec.dataset.kind}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=storage,
            checkpoint_config=CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute="val_map", checkpoint_score_order="max"
            ),
        ),
    )
    print(
        f"fine-tuning {spec.model.name} ({spec.model.weights}) on {spec.dataset.kind}: {len(train_records)} train / "
        f"{len(val_records)} val images, {workers} worker(s){' on GPU' if use_gpu else ''}, {spec.epochs} epochs",
        flush=True,
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    best = result.get_best_checkpoint("val_map", "max") or result.checkpoint
    if best is None:
        raise RuntimeError("fine-tuning finished without a checkpoint")
    target = output / "best.pt"
    with best.as_directory() as folder:
        shutil.copyfile(Path(folder) / CHECKPOINT_FILE, target)
    outcome = result.return_value or {}
    history = outcome.get("history", [])
    payload = torch.load(target, map_location="cpu", weights_only=True)
    summary = {
        "spec": spec.model_dump(mode="json"),
        "checkpoint": str(target),
        "best_epoch": payload["epoch"],
        "best_val_map": payload["val_map"],
        "workers": workers,
        "use_gpu": use_gpu,
        "train_records": len(train_records),
        "val_records": len(val_records),
        "history": history,
        "errors": outcome.get("errors", []),
        "ray_storage": str(result.path),
        "load_with": f"--set model.name={spec.model.name} --set model.weights={target} --set model.num_classes={spec.num_classes()}",
    }
    (output / "finetune.json").write_text(json.dumps(summary, indent=2))
    return FinetuneResult(target, payload["epoch"], payload["val_map"], history, summary["errors"])
