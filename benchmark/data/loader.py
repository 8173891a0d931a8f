"""Decoding records into batches of preprocessed pixels; bad images become errors, never exceptions.

``prefetch_batches`` decodes the next batch in a background thread while the caller computes
on the current one, so loading overlaps the model and every image is decoded once per shard.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch

from .base import ImageDataset, ImageError, ImageRecord
from .preprocess import Geometry, Preprocess


@dataclass
class ImageBatch:
    image_ids: list[str]
    pixels: torch.Tensor  # [N,3,H,W] float in [0,1], unnormalized (the occlusion blur works on these)
    labels: torch.Tensor  # [N] long; -1 where the dataset has no single ground-truth class
    geometries: list[Geometry]
    targets: torch.Tensor | None = None  # [N,C] float multi-hot crop labels (COCO/VOC), else None

    def __len__(self) -> int:
        return len(self.image_ids)

    def to(self, device: torch.device) -> "ImageBatch":
        non_blocking = device.type == "cuda"
        pixels = self.pixels.pin_memory() if non_blocking else self.pixels
        return ImageBatch(
            self.image_ids,
            pixels.to(device, non_blocking=non_blocking),
            self.labels.to(device, non_blocking=non_blocking),
            self.geometries,
            None if self.targets is None else self.targets.to(device, non_blocking=non_blocking),
        )


@dataclass(frozen=True)
class LoadError:
    image_id: str
    source: str
    reason: str


@dataclass(frozen=True)
class LoadedImage:
    """One decoded and preprocessed image with its labels."""

    record: ImageRecord
    pixels: torch.Tensor  # [3,crop,crop]
    geometry: Geometry
    target: np.ndarray | None  # multi-hot, for multi-label datasets


def load_image(dataset: ImageDataset, record: ImageRecord, preprocess: Preprocess) -> LoadedImage | LoadError:
    """Decode, preprocess and label one record; any failure is returned as a LoadError."""
    try:
        image = dataset.decode(record)
        pixels, geometry = preprocess(image)
        target = dataset.multi_hot(record, geometry)
    except ImageError as error:
        return LoadError(record.image_id, record.source, str(error))
    except Exception as error:  # a decoder bug must not lose the rest of the shard
        return LoadError(record.image_id, record.source, f"{type(error).__name__}: {error}")
    return LoadedImage(record, pixels, geometry, target)


def load_images(
    dataset: ImageDataset, records: Sequence[ImageRecord], preprocess: Preprocess
) -> tuple[ImageBatch | None, list[LoadError]]:
    """Decode and preprocess every record; unreadable ones are reported, never raised."""
    loaded: list[LoadedImage] = []
    errors: list[LoadError] = []
    for record in records:
        result = load_image(dataset, record, preprocess)
        (errors if isinstance(result, LoadError) else loaded).append(result)  # type: ignore[arg-type]
    if not loaded:
        return None, errors
    targets = None
    if all(item.target is not None for item in loaded):
        targets = torch.from_numpy(np.stack([item.target for item in loaded]).astype(np.float32))  # type: ignore[misc]
    batch = ImageBatch(
        [item.record.image_id for item in loaded],
        torch.stack([item.pixels for item in loaded]),
        torch.tensor([-1 if item.record.label is None else item.record.label for item in loaded], dtype=torch.long),
        [item.geometry for item in loaded],
        targets,
    )
    return batch, errors


def prefetch_batches(
    dataset: ImageDataset, records: Sequence[ImageRecord], preprocess: Preprocess, batch_size: int
) -> Iterator[tuple[ImageBatch | None, list[LoadError]]]:
    """Batches of ``records`` in order; batch k+1 is decoded in a background thread while the
    caller works on batch k. Each record is decoded exactly once."""
    chunks = [list(records[i : i + batch_size]) for i in range(0, len(records), batch_size)]
    if not chunks:
        return
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as pool:
        pending = pool.submit(load_images, dataset, chunks[0], preprocess)
        for following in chunks[1:] + [None]:
            result = pending.result()
            if following is not None:
                pending = pool.submit(load_images, dataset, following, preprocess)
            yield result
