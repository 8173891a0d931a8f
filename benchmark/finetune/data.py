"""Training and validation samples: decoded crops, ImageNet-normalized, with multi-hot crop labels.

Decoding happens in DataLoader worker processes, ahead of the model. An unreadable image is
dropped from its batch and reported (with its file and reason), never raised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from ..data import ImageDataset, ImageRecord, LoadError, Preprocess
from ..data.loader import load_image
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD


@dataclass
class Batch:
    indices: torch.Tensor  # [B] positions in the record list (validation results are gathered by them)
    pixels: torch.Tensor  # [B,3,H,W] normalized
    targets: torch.Tensor  # [B,C] multi-hot
    errors: list[LoadError]


class MultiLabelImages(torch.utils.data.Dataset):
    def __init__(
        self, dataset: ImageDataset, records: Sequence[ImageRecord], preprocess: Preprocess, flip: bool = False
    ) -> None:
        self.dataset, self.records, self.preprocess, self.flip = dataset, list(records), preprocess, flip
        self.mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> tuple[int, torch.Tensor, torch.Tensor] | LoadError:
        item = load_image(self.dataset, self.records[position], self.preprocess)
        if isinstance(item, LoadError):
            return item
        if item.target is None:
            raise TypeError(f"dataset kind '{self.dataset.kind}' has no multi-label targets")
        pixels = item.pixels
        if self.flip and bool(torch.rand(()) < 0.5):
            pixels = pixels.flip(-1)  # the centre crop is symmetric: its labels do not change
        return position, (pixels - self.mean) / self.std, torch.from_numpy(item.target)


def collate(items: list) -> Batch:
    """Stack the good samples; unreadable ones become the batch's ``errors``."""
    errors = [item for item in items if isinstance(item, LoadError)]
    good = [item for item in items if not isinstance(item, LoadError)]
    if not good:
        return Batch(torch.zeros(0, dtype=torch.long), torch.zeros(0), torch.zeros(0), errors)
    positions, pixels, targets = zip(*good)
    return Batch(torch.tensor(positions), torch.stack(pixels), torch.stack(targets), errors)
