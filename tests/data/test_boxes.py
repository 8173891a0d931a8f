"""Centre-crop multi-label targets (supplement A.3): hand-computed boxes, and boxes measured in pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from benchmark.data import BoxAnnotation, Geometry, Preprocess, crop_targets
from benchmark.data.boxes import crop_box_fractions

# A 100 x 200 (h x w) image resized by 0.5 to 50 x 100; the 50 px crop spans x in [25, 75], y in [0, 50].
WIDE = Geometry(original_height=100, original_width=200, scale_y=0.5, scale_x=0.5, top=0, left=25, size=50)


@pytest.mark.parametrize(
    ("box", "fraction"),
    [
        ([0, 0, 60, 100], 5 / 30),  # resized x [0, 30]: 5 of 30 columns inside
        ([40, 0, 80, 100], 15 / 20),  # resized x [20, 40]
        ([20, 0, 70, 100], 10 / 25),  # resized x [10, 35]: exactly 40 %
        ([19.6, 0, 70, 100], 10 / 25.2),  # a hair below 40 %
        ([140, 0, 200, 100], 5 / 30),  # right border: resized x [70, 100]
        ([60, 20, 100, 60], 1.0),  # inside
        ([250, 0, 300, 100], 0.0),  # outside the image altogether
        ([80, 30, 80, 60], 0.0),  # zero width: never positive
    ],
)
def test_fraction_of_a_box_inside_the_crop_is_measured_in_the_resized_frame(box: list[float], fraction: float) -> None:
    assert crop_box_fractions(np.array([box]), WIDE)[0] == pytest.approx(fraction)


def test_a_tall_image_crops_vertically() -> None:
    # 200 x 100 (h x w) resized by 0.5: crop y in [25, 75]
    tall = Geometry(200, 100, 0.5, 0.5, top=25, left=0, size=50)
    assert crop_box_fractions(np.array([[0, 0, 100, 100], [0, 180, 100, 200]]), tall) == pytest.approx([0.5, 0.0])


def test_anisotropic_scale_of_torchvision_rounding() -> None:
    # 48 x 64 resized to 32 x 42 (torchvision: int(32 * 64 / 48) = 42), crop 32 at left 5.
    geometry = Preprocess(resize=32, crop=32)(np.zeros((48, 64, 3), np.uint8))[1]
    assert (geometry.scale_y, geometry.scale_x, geometry.top, geometry.left) == (32 / 48, 42 / 64, 0, 5)
    # COCO box [x=0, y=30, w=14, h=10]: resized x [0, 9.1875], inside [5, 9.1875] -> 4.1875 / 9.1875
    assert crop_box_fractions(np.array([[0, 30, 14, 40]]), geometry)[0] == pytest.approx(4.1875 / 9.1875)


def test_class_is_positive_when_one_of_its_boxes_is_40_percent_inside() -> None:
    annotation = BoxAnnotation.from_lists(
        classes=[3, 3, 1, 4, 5, 6],
        boxes=[[0, 0, 60, 100], [40, 0, 80, 100], [0, 0, 60, 100], [20, 0, 70, 100], [19.6, 0, 70, 100], [60, 20, 100, 60]],
        flagged=[False, False, False, False, False, True],
    )
    expected = np.zeros(8, np.float32)
    expected[[3, 4, 6]] = 1  # class 3 through its second box; 4 at exactly 40 %; 6 (flagged) counts by default
    target = crop_targets(annotation, WIDE, num_classes=8)
    assert target.dtype == np.float32 and np.array_equal(target, expected)
    expected[6] = 0
    assert np.array_equal(crop_targets(annotation, WIDE, 8, skip_flagged=True), expected)
    # a stricter threshold: only the 75 % box of class 3 and the inside box survive
    assert np.flatnonzero(crop_targets(annotation, WIDE, 8, fraction=0.75)).tolist() == [3, 6]


def test_an_image_without_boxes_has_no_positive_label() -> None:
    assert not crop_targets(BoxAnnotation.from_lists([], [], []), WIDE, 20).any()


@pytest.mark.parametrize("seed", range(4))
def test_fraction_agrees_with_the_pixels_of_a_painted_box(seed: int) -> None:
    """Independent check: paint the box, resize and crop the image, compare the painted mass inside the crop."""
    rng = np.random.default_rng(seed)
    height, width = int(rng.integers(60, 120)), int(rng.integers(60, 120))
    x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
    x1, y1 = int(rng.integers(x0 + 10, width)), int(rng.integers(y0 + 10, height))
    image = np.zeros((height, width, 3), np.uint8)
    image[y0:y1, x0:x1] = 255
    preprocess = Preprocess(resize=48, crop=40)
    crop, geometry = preprocess(image)
    resized = TF.resize(torch.from_numpy(image).permute(2, 0, 1), 48, antialias=True).float() / 255
    measured = float(crop.sum() / resized.sum())
    assert crop_box_fractions(np.array([[x0, y0, x1, y1]]), geometry)[0] == pytest.approx(measured, abs=0.03)
