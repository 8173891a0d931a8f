"""From a job spec to its dataset and the records it selects (offset / limit of the canonical order)."""

from __future__ import annotations

from typing import Callable

from ..config.spec import JobSpec
from .base import ImageDataset, ImageRecord
from .samples import SampleImages
from .synthetic import SyntheticImages

DatasetFactory = Callable[[JobSpec], ImageDataset]

DATASETS: dict[str, DatasetFactory] = {
    "samples": lambda spec: SampleImages(),
    "synthetic": lambda spec: SyntheticImages(
        spec.dataset.synthetic_images, spec.dataset.synthetic_seed, spec.num_classes()
    ),
}


def build_dataset(spec: JobSpec) -> ImageDataset:
    try:
        factory = DATASETS[spec.dataset.kind]
    except KeyError:
        raise ValueError(
            f"dataset.kind '{spec.dataset.kind}' has no reader installed; available: {', '.join(DATASETS)}"
        ) from None
    return factory(spec)


def select_records(spec: JobSpec, dataset: ImageDataset) -> list[ImageRecord]:
    """The run's images: the canonical order from ``offset``, at most ``limit`` of them."""
    records = dataset.index()
    start = spec.dataset.offset
    stop = len(records) if spec.dataset.limit is None else min(len(records), start + spec.dataset.limit)
    return records[start:stop]
