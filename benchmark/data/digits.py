"""``digits``: scikit-learn's 8×8 handwritten digits, upsampled to 32-px RGB (the trained-network test bed).

scikit-learn ships the 1797 images (no download). The split is fixed: every fifth image (index
i with i % 5 == 4) is validation, the others training, so both cover all writers and classes.
An image is the 8×8 grey levels (0–16) scaled to 0–255 and resized bilinearly to 32 px, as
torchvision resizes; ``split: val`` (the default) is what a job evaluates, ``split: train`` what
``benchmark.testbed`` trains on. Image ids name the index in ``load_digits()``: ``digit-0004``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .base import ImageDataset, ImageError, ImageRecord

SIZE = 32  # side of the RGB images, the test bed's input size
SPLITS = ("train", "val")
CLASSES = [str(digit) for digit in range(10)]


@lru_cache(maxsize=1)
def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1797 images [N, 8, 8] (float, 0–16) and labels [N] of scikit-learn's bundled copy."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError as error:
        raise ImportError(f"dataset kind 'digits' needs scikit-learn ({error}); pip install scikit-learn") from None
    bunch = sklearn_digits()
    return bunch.images, bunch.target


def split_indices(split: str) -> np.ndarray:
    if split not in SPLITS:
        raise ValueError(f"dataset.split: the digits dataset has splits {', '.join(SPLITS)}, not '{split}'")
    count = len(load_digits()[1])
    indices = np.arange(count)
    return indices[indices % 5 == 4] if split == "val" else indices[indices % 5 != 4]


def upsample(grey: np.ndarray) -> np.ndarray:
    """8×8 grey levels (0–16) -> uint8 RGB [SIZE, SIZE, 3]."""
    levels = torch.from_numpy(np.rint(np.asarray(grey, dtype=np.float64) * (255.0 / 16.0)).astype(np.uint8))
    resized = TF.resize(levels[None], [SIZE, SIZE], interpolation=TF.InterpolationMode.BILINEAR, antialias=True)
    return np.ascontiguousarray(resized[0, :, :, None].expand(SIZE, SIZE, 3).numpy())


class DigitImages(ImageDataset):
    kind = "digits"

    def __init__(self, split: str = "val") -> None:
        split_indices(split)  # an unknown split fails when the spec is planned
        self.split = split

    def index(self) -> list[ImageRecord]:
        _, labels = load_digits()
        return [
            ImageRecord(image_id=f"digit-{i:04d}", source=f"sklearn.datasets.load_digits[{i}]", label=int(labels[i]))
            for i in split_indices(self.split)
        ]

    def decode(self, record: ImageRecord) -> np.ndarray:
        images, _ = load_digits()
        try:
            index = int(record.image_id.removeprefix("digit-"))
            return upsample(images[index])
        except (ValueError, IndexError) as error:
            raise ImageError(f"{record.image_id} is not an image of the digits dataset: {error}") from None

    def class_names(self) -> list[str]:
        return CLASSES

    def describe(self) -> dict:
        return {"kind": self.kind, "split": self.split, "images": len(split_indices(self.split)), "size": SIZE}
