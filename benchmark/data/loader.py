"""Decoding a list of records into one batch of preprocessed pixels; bad images become errors."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import ImageDataset, ImageError, ImageRecord
from .preprocess import Geometry, Preprocess


@dataclass
class ImageBatch:
    image_ids: list[str]
    pixels: torch.Tensor  # [N,3,H,W] float in [0,1], unnormalized
    labels: torch.Tensor  # [N] long; -1 where the dataset has no single ground-truth class
    geometries: list[Geometry]

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
        )


@dataclass(frozen=True)
class LoadError:
    image_id: str
    source: str
    reason: str


def load_images(
    dataset: ImageDataset, records: list[ImageRecord], preprocess: Preprocess
) -> tuple[ImageBatch | None, list[LoadError]]:
    """Decode and preprocess every record; unreadable ones are reported, never raised."""
    pixels, ids, labels, geometries, errors = [], [], [], [], []
    for record in records:
        try:
            image = dataset.decode(record)
            tensor, geometry = preprocess(image)
        except ImageError as error:
            errors.append(LoadError(record.image_id, record.source, str(error)))
            continue
        except Exception as error:  # a decoder bug must not lose the rest of the shard
            errors.append(LoadError(record.image_id, record.source, f"{type(error).__name__}: {error}"))
            continue
        pixels.append(tensor)
        ids.append(record.image_id)
        labels.append(-1 if record.label is None else record.label)
        geometries.append(geometry)
    if not pixels:
        return None, errors
    return ImageBatch(ids, torch.stack(pixels), torch.tensor(labels, dtype=torch.long), geometries), errors
