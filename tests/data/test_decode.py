"""PIL decoding by content: the bad image files of the fixtures, against PIL and the painted originals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from benchmark.data import ImageError
from benchmark.data.fixtures import IMAGENET_IMAGES, _imagenet_picture, imagenet_name, paint
from benchmark.data.images import read_rgb


def flat(root: Path, number: int) -> Path:
    return root / "imagenet_flat" / "val" / f"{imagenet_name(number)}.JPEG"


def painted(number: int) -> np.ndarray:
    _, wnid, how, width, height = next(entry for entry in IMAGENET_IMAGES if entry[0] == number)
    return paint(_imagenet_picture(number, wnid, how, width, height), seed=number)


def test_rgb_jpeg_equals_pil(fixture_root: Path) -> None:
    path = flat(fixture_root, 1)
    image = read_rgb(path)
    assert image.dtype == np.uint8 and image.shape == (48, 64, 3) and image.flags.writeable
    assert np.array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    assert np.abs(image.astype(int) - painted(1)).mean() < 4  # JPEG keeps the painted picture


def test_png_behind_jpeg_name_decodes_losslessly(fixture_root: Path) -> None:
    path = flat(fixture_root, 4)
    assert Image.open(path).format == "PNG" and path.suffix == ".JPEG"
    assert np.array_equal(read_rgb(path), painted(4))


def test_grayscale_jpeg_is_expanded_to_three_equal_channels(fixture_root: Path) -> None:
    path = flat(fixture_root, 2)
    assert Image.open(path).mode == "L"
    image = read_rgb(path)
    assert image.shape == (64, 48, 3)
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 0], image[..., 2])
    assert np.array_equal(image[..., 0], np.asarray(Image.open(path)))


def test_cmyk_jpeg_is_converted_to_rgb(fixture_root: Path) -> None:
    path = flat(fixture_root, 3)
    assert Image.open(path).mode == "CMYK"
    image = read_rgb(path)
    assert image.shape == (60, 80, 3)
    assert np.array_equal(image, np.asarray(Image.open(path).convert("RGB")))
    assert np.abs(image.astype(int) - painted(3)).mean() < 6  # the colours survive the CMYK round trip


@pytest.mark.parametrize(
    ("number", "reason"),
    [(5, "truncated"), (7, "not a readable image"), (9, "file not found")],
    ids=["truncated", "not-an-image", "missing"],
)
def test_unusable_files_raise_image_error_naming_file_and_reason(fixture_root: Path, number: int, reason: str) -> None:
    path = flat(fixture_root, number)
    with pytest.raises(ImageError) as caught:
        read_rgb(path)
    assert str(path) in str(caught.value) and reason in str(caught.value)


def test_truncated_jpeg_is_what_pil_itself_refuses(fixture_root: Path) -> None:
    """The policy is PIL's default: LOAD_TRUNCATED_IMAGES off, so PIL raises and we report."""
    path = flat(fixture_root, 5)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.raises(OSError, match="truncated"):
        Image.open(path).load()


def test_truncated_images_switched_on_elsewhere_is_refused(fixture_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(ImageError, match="LOAD_TRUNCATED_IMAGES"):
        read_rgb(flat(fixture_root, 1))
