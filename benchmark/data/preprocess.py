"""Resize and centre crop, keeping pixels unnormalized (the occlusion blur works on pixels).

ImageNet-style: shorter side to 256, centre crop 224; COCO/VOC: resize 224, crop 224
(supplement A.3). Normalization to the model's input statistics happens on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from ..config.spec import DatasetSpec


@dataclass(frozen=True)
class Geometry:
    """Where the crop lies in the original image, for datasets that map boxes into the crop:
    crop pixel (y, x) is original pixel ((y + top) / scale_y, (x + left) / scale_x)."""

    original_height: int
    original_width: int
    scale_y: float
    scale_x: float
    top: int  # crop offset in the resized image
    left: int
    size: int


@dataclass(frozen=True)
class Preprocess:
    resize: int
    crop: int

    @classmethod
    def from_spec(cls, spec: DatasetSpec) -> "Preprocess":
        if spec.resize is not None:
            resize = spec.resize
        elif spec.kind in ("coco", "voc", "digits"):
            resize = spec.crop
        else:
            resize = round(spec.crop * 256 / 224)
        return cls(resize=max(resize, spec.crop), crop=spec.crop)

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, Geometry]:
        """uint8 RGB [H,W,3] -> float [3,crop,crop] in [0,1], and the crop's geometry.

        torchvision's own Resize(shorter side)/CenterCrop rounding, so the pixels equal the
        standard ImageNet evaluation transform's.
        """
        height, width = image.shape[:2]
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        resized = TF.resize(tensor, self.resize, antialias=True)
        new_h, new_w = resized.shape[1:]
        top, left = int(round((new_h - self.crop) / 2.0)), int(round((new_w - self.crop) / 2.0))
        cropped = TF.center_crop(resized, [self.crop, self.crop])
        geometry = Geometry(height, width, new_h / height, new_w / width, top, left, self.crop)
        return cropped.float().div_(255.0), geometry
