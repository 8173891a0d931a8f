"""From a job spec to its dataset and the records it selects (offset / limit of the canonical order)."""

from __future__ import annotations

from typing import Callable

from ..config.spec import DatasetSpec, JobSpec
from .base import ImageDataset, ImageRecord
from .coco import CocoDetection
from .digits import DigitImages
from .imagenet import ImageNetVal
from .samples import SampleImages
from .synthetic import SyntheticImages
from .voc import VocDetection

# kind -> factory(dataset spec, the model's number of classes). Building is cheap (no file is
# parsed); ``index()`` reads the annotations.
DatasetFactory = Callable[[DatasetSpec, int], ImageDataset]

DATASETS: dict[str, DatasetFactory] = {
    "samples": lambda d, n: SampleImages(),
    "synthetic": lambda d, n: SyntheticImages(d.synthetic_images, d.synthetic_seed, n),
    "imagenet": lambda d, n: ImageNetVal(d.root, d.split, d.images_dir, d.labels_file, d.class_list, n),
    "coco": lambda d, n: CocoDetection(
        d.root, d.split, d.annotation_file, d.images_dir, n, d.box_fraction, d.skip_flagged_boxes
    ),
    "voc": lambda d, n: VocDetection(d.root, d.split, n, d.box_fraction, d.skip_flagged_boxes),
    "digits": lambda d, n: DigitImages(d.split),
}


def dataset_from_spec(dataset: DatasetSpec, num_classes: int) -> ImageDataset:
    try:
        factory = DATASETS[dataset.kind]
    except KeyError:
        raise ValueError(
            f"dataset.kind '{dataset.kind}' has no reader installed; available: {', '.join(DATASETS)}"
        ) from None
    built = factory(dataset, num_classes)
    if hasattr(built, "read_timeout"):
        built.read_timeout = dataset.read_timeout
    return built


def build_dataset(spec: JobSpec) -> ImageDataset:
    return dataset_from_spec(spec.dataset, spec.num_classes())


def slice_records(records: list[ImageRecord], offset: int, limit: int | None) -> list[ImageRecord]:
    stop = len(records) if limit is None else min(len(records), offset + limit)
    return records[offset:stop]


def select_records(spec: JobSpec, dataset: ImageDataset) -> list[ImageRecord]:
    """The run's images: the canonical order from ``offset``, at most ``limit`` of them."""
    return slice_records(dataset.index(), spec.dataset.offset, spec.dataset.limit)
