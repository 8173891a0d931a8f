"""``benchmark finetune``: the COCO / VOC multi-label classifiers of supplement A.3, on Ray Train."""

from __future__ import annotations

import argparse

# flag -> key of the fine-tuning spec it sets
FLAG_KEYS = {
    "dataset": "dataset.kind",
    "root": "dataset.root",
    "model": "model.name",
    "weights": "model.weights",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "crop": "dataset.crop",
    "resize": "dataset.resize",
    "workers": "workers",
    "gpu": "use_gpu",
    "loader_workers": "loader_workers",
    "train_limit": "train_limit",
    "val_limit": "dataset.limit",
    "out": "output",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "finetune",
        help="fine-tune a COCO or VOC multi-label classifier (supplement A.3) on Ray Train",
        description="Starts from ImageNet weights (or a file), trains on the training split with AdamW (lr 1e-4, all "
        "layers), batch 64, resize 224 / centre crop 224, random horizontal flip, up to 20 epochs, and keeps the "
        "epoch of best validation mAP as OUT/best.pt, which an evaluation run loads with --set model.weights=OUT/best.pt.",
    )
    parser.add_argument("spec", nargs="?", help="fine-tuning spec (YAML, e.g. jobs/finetune/coco.yaml); flags override it")
    parser.add_argument("--dataset", choices=("coco", "voc"), help="dataset kind")
    parser.add_argument("--root", help="dataset root (COCO: holds annotations/ and train2017/; VOC: the VOC20xx folder)")
    parser.add_argument("--model", help="architecture: resnet50, resnet34, vgg16, densenet121, efficientnet-b0")
    parser.add_argument("--weights", help="starting weights: imagenet (default), random, or a state-dict file")
    parser.add_argument("--epochs", type=int, help="epochs (default 20); the best validation epoch is kept")
    parser.add_argument("--batch-size", type=int, help="global batch size (default 64)")
    parser.add_argument("--lr", type=float, help="AdamW learning rate (default 1e-4)")
    parser.add_argument("--crop", type=int, help="centre-crop size (default 224)")
    parser.add_argument("--resize", type=int, help="shorter side before cropping (default: the crop size)")
    parser.add_argument("--workers", type=int, help="Ray Train workers (default: one per GPU, else 1)")
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None, help="train on GPUs (default: if any)")
    parser.add_argument("--loader-workers", type=int, help="DataLoader processes per worker (default 4)")
    parser.add_argument("--train-limit", type=int, help="only the first N training images")
    parser.add_argument("--val-limit", type=int, help="only the first N validation images")
    parser.add_argument("--out", help="output folder (default runs/finetune-<dataset>)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override any spec value, e.g. --set train_split=trainval (repeatable)")
    parser.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    parser.set_defaults(handler=run)


def build_spec(args: argparse.Namespace):
    """The validated spec: the YAML file (if any), then the flags, then --set overrides."""
    from pathlib import Path

    import yaml
    from pydantic import ValidationError

    from ..config import SpecError
    from ..config.load import apply_overrides, format_validation_error
    from ..finetune.spec import FinetuneSpec

    raw: dict = {}
    source = "<command line>"
    if args.spec:
        path = Path(args.spec)
        if not path.is_file():
            raise SpecError(f"{path}: fine-tuning spec not found")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise SpecError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise SpecError(f"{path}: a fine-tuning spec must be a mapping (model, dataset, epochs, ...)")
        source = str(path)
    for flag, key in FLAG_KEYS.items():
        if getattr(args, flag) is not None:
            _put(raw, key.split("."), getattr(args, flag))
    raw = apply_overrides(raw, args.overrides)
    try:
        return FinetuneSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(format_validation_error(error, source, root=FinetuneSpec)) from None


def _put(raw: dict, parts: list[str], value: object) -> None:
    """Set a flag's value as given (no YAML parsing: paths stay strings)."""
    for part in parts[:-1]:
        raw = raw.setdefault(part, {})
    raw[parts[-1]] = value


def run(args: argparse.Namespace) -> int:
    from ..finetune.train import run_finetune

    spec = build_spec(args)
    result = run_finetune(spec, address=args.address)
    print(
        f"best epoch {result.best_epoch}: validation mAP {result.best_map:.4f}\n"
        f"checkpoint: {result.checkpoint}\n"
        f"evaluate with: benchmark run JOB.yaml --set model.name={spec.model.name} "
        f"--set model.weights={result.checkpoint} --set model.num_classes={spec.num_classes()}"
    )
    if result.errors:
        print(f"{len(result.errors)} unreadable image(s) were skipped; see {result.checkpoint.parent / 'finetune.json'}")
    return 0
