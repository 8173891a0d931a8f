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
    """Where the crop lies in the original image, for datasets that map boxes into the crop."""

    original_height: int
    original_width: int
    scale: float  # resized = original * scale
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
        elif spec.kind in ("coco", "voc"):
            resize = spec.crop
        else:
            resize = round(spec.crop * 256 / 224)
        return cls(resize=max(resize, spec.crop), crop=spec.crop)

    def geometry(self, height: int, width: int) -> Geometry:
        scale = self.resize / min(height, width)
        new_h, new_w = max(self.crop, round(height * scale)), max(self.crop, round(width * scale))
        return Geometry(height, width, scale, (new_h - self.crop) // 2, (new_w - self.crop) // 2, self.crop)

    def __call__(self, image: np.ndarray) -> tuple[torch.Tensor, Geometry]:
        """uint8 RGB [H,W,3] -> float [3,crop,crop] in [0,1], and the crop's geometry."""
        height, width = image.shape[:2]
        geometry = self.geometry(height, width)
        tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
        new_size = [max(self.crop, round(height * geometry.scale)), max(self.crop, round(width * geometry.scale))]
        tensor = TF.resize(tensor, new_size, antialias=True)
        tensor = tensor[:, geometry.top : geometry.top + self.crop, geometry.left : geometry.left + self.crop]
        return tensor.float().div_(255.0), geometry
