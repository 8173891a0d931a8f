"""What every dataset provides: image records in one canonical order, and a way to decode them.

A dataset is an *index* (``index()``: cheap, read at planning time, identical on every
machine) plus a *decoder* (``decode()``: run by the workers). Shards are contiguous ranges
of the index, so a shard id names the same images forever (DESIGN §8).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .preprocess import Geometry


class ImageError(Exception):
    """One image could not be used; it becomes a row of the ``errors`` table, the run goes on."""


class AnnotationError(ValueError):
    """A malformed annotation or labels file: the job fails before any work, naming the file."""


@dataclass(frozen=True)
class ImageRecord:
    """One image of a dataset's canonical order.

    ``label`` is the single ground-truth class (ImageNet) or None; ``annotation`` carries what a
    dataset needs to derive targets after preprocessing (e.g. COCO/VOC boxes).
    """

    image_id: str
    source: str
    label: int | None = None
    annotation: Any = field(default=None, compare=False, hash=False)


class ImageDataset(ABC):
    kind: str = ""

    @abstractmethod
    def index(self) -> list[ImageRecord]:
        """Every record in canonical order (before offset/limit)."""

    @abstractmethod
    def decode(self, record: ImageRecord) -> np.ndarray:
        """The image as an RGB uint8 array [H,W,3]; raises ImageError with a reason."""

    def multi_hot(self, record: ImageRecord, geometry: "Geometry") -> np.ndarray | None:
        """Multi-label target [num_classes] of the preprocessed crop (COCO/VOC); None for single-label data."""
        return None

    def class_names(self) -> list[str] | None:
        """Names of the class indices, where the dataset knows them."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}
