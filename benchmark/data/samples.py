"""``samples``: the natural photos bundled with scikit-image, for the quickstart (no download)."""

from __future__ import annotations

import numpy as np

from .base import ImageDataset, ImageError, ImageRecord

# Photos shipped inside the scikit-image wheel (no pooch download); grayscale ones are expanded to RGB.
SAMPLE_NAMES = (
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "rocket",
    "hubble_deep_field",
    "immunohistochemistry",
    "motorcycle_left",
    "coins",
    "moon",
)


class SampleImages(ImageDataset):
    kind = "samples"

    def index(self) -> list[ImageRecord]:
        return [ImageRecord(image_id=name, source=f"skimage.data.{name}") for name in SAMPLE_NAMES]

    def decode(self, record: ImageRecord) -> np.ndarray:
        import skimage.data

        try:
            if record.image_id == "motorcycle_left":
                image = skimage.data.stereo_motorcycle()[0]
            else:
                image = getattr(skimage.data, record.image_id)()
        except Exception as error:  # a broken or partial scikit-image install
            raise ImageError(f"cannot load {record.source}: {error}") from None
        return as_rgb(image)


def as_rgb(image: np.ndarray) -> np.ndarray:
    """uint8 RGB [H,W,3] from grayscale, RGB or RGBA arrays."""
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image.astype(np.uint8))
