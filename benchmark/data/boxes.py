"""Multi-label targets of a centre crop from bounding boxes (COCO, VOC; supplement A.3).

"For fine-tuning we assigned a centercrop a positive label if it contained at least 40% of
the area of a bounding box of a class." Boxes are mapped into the resized image (where the
crop is a square), intersected with the crop, and a class is positive when the intersection
holds at least ``fraction`` of one of its boxes' area, both measured in the resized frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import ImageRecord
from .images import ImageFiles
from .preprocess import Geometry

# Relative slack of the >= comparison, so that exactly 40 % counts despite float rounding.
_TOLERANCE = 1e-9


@dataclass(frozen=True)
class BoxAnnotation:
    """An image's boxes in original pixel coordinates, continuous: x0, y0, x1, y1 with x1 - x0 the width.

    ``flagged`` marks COCO crowd / VOC difficult boxes (ignored when ``skip_flagged_boxes``).
    """

    classes: np.ndarray  # [K] int64 class index
    boxes: np.ndarray  # [K,4] float64 x0, y0, x1, y1
    flagged: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # [K] bool

    @classmethod
    def from_lists(cls, classes: list[int], boxes: list[list[float]], flagged: list[bool]) -> "BoxAnnotation":
        return cls(
            np.asarray(classes, np.int64).reshape(-1),
            np.asarray(boxes, np.float64).reshape(-1, 4),
            np.asarray(flagged, bool).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.classes)


def crop_box_fractions(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """For each box [K,4] (original pixels), the fraction of its resized area inside the centre crop."""
    scale = np.array([geometry.scale_x, geometry.scale_y, geometry.scale_x, geometry.scale_y])
    resized = np.asarray(boxes, np.float64).reshape(-1, 4) * scale
    x0, y0, x1, y1 = resized.T
    area = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    left, top, size = geometry.left, geometry.top, geometry.size
    inside_w = np.clip(np.minimum(x1, left + size) - np.maximum(x0, left), 0, None)
    inside_h = np.clip(np.minimum(y1, top + size) - np.maximum(y0, top), 0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(area > 0, inside_w * inside_h / np.where(area > 0, area, 1.0), 0.0)


def crop_targets(
    annotation: BoxAnnotation, geometry: Geometry, num_classes: int, fraction: float = 0.4, skip_flagged: bool = False
) -> np.ndarray:
    """Multi-hot [num_classes] float32: class c is 1 when the crop holds >= ``fraction`` of one of c's boxes."""
    target = np.zeros(num_classes, np.float32)
    if len(annotation) == 0:
        return target
    positive = crop_box_fractions(annotation.boxes, geometry) >= fraction * (1 - _TOLERANCE)
    if skip_flagged and len(annotation.flagged):
        positive &= ~annotation.flagged
    target[annotation.classes[positive]] = 1.0
    return target


class BoxDataset(ImageFiles):
    """Image files with box annotations; multi-hot crop targets shared by COCO and VOC."""

    num_classes: int
    box_fraction: float = 0.4
    skip_flagged_boxes: bool = False

    def multi_hot(self, record: ImageRecord, geometry: Geometry) -> np.ndarray:
        annotation = record.annotation if record.annotation is not None else BoxAnnotation.from_lists([], [], [])
        return crop_targets(annotation, geometry, self.num_classes, self.box_fraction, self.skip_flagged_boxes)
