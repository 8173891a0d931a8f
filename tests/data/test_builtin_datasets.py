"""The built-in datasets (samples, synthetic), preprocessing and the loader's error handling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision.transforms.v2 as T

from benchmark.config import validate_job
from benchmark.data import ImageError, ImageRecord, Preprocess, build_dataset, load_images, select_records
from benchmark.data.base import ImageDataset
from benchmark.data.samples import SAMPLE_NAMES, SampleImages
from benchmark.data.synthetic import SyntheticImages


def spec_for(**dataset):
    return validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": dataset, "methods": [{"name": "gradient"}]})


def test_samples_decode_to_rgb_uint8() -> None:
    dataset = SampleImages()
    records = dataset.index()
    assert [r.image_id for r in records] == list(SAMPLE_NAMES)
    for record in records:
        image = dataset.decode(record)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, record.image_id
    gray = dataset.decode(records[1])  # 'camera' is grayscale: expanded to three equal channels
    assert np.array_equal(gray[..., 0], gray[..., 2])


def test_synthetic_is_a_pure_function_of_seed_and_index() -> None:
    a, b = SyntheticImages(5, seed=3, num_classes=10), SyntheticImages(5, seed=3, num_classes=10)
    assert [r.label for r in a.index()] == [r.label for r in b.index()]
    assert np.array_equal(a.decode(a.index()[4]), b.decode(b.index()[4]))
    assert not np.array_equal(a.decode(a.index()[0]), a.decode(a.index()[1]))
    assert all(0 <= r.label < 10 for r in a.index())


def test_offset_and_limit_select_a_range_of_the_canonical_order() -> None:
    spec = spec_for(kind="samples", offset=2, limit=3)
    selected = select_records(spec, build_dataset(spec))
    assert [r.image_id for r in selected] == list(SAMPLE_NAMES[2:5])


def test_preprocess_matches_torchvision_resize_and_centre_crop() -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(300, 451, 3), dtype=np.uint8)
    tensor, geometry = Preprocess(resize=256, crop=224)(image)
    reference = T.Compose([T.Resize(256, antialias=True), T.CenterCrop(224)])(torch.from_numpy(image).permute(2, 0, 1))
    assert tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    assert torch.allclose(tensor, reference.float() / 255, atol=1e-6)
    assert geometry.scale_y == pytest.approx(256 / 300) and geometry.size == 224 and geometry.left == 80
    assert Preprocess.from_spec(spec_for(kind="samples").dataset) == Preprocess(256, 224)
    assert Preprocess.from_spec(spec_for(kind="synthetic", crop=32).dataset) == Preprocess(37, 32)


class HalfBroken(ImageDataset):
    kind = "broken"

    def index(self):
        return [ImageRecord(f"i{k}", f"file{k}.jpg", label=k) for k in range(4)]

    def decode(self, record):
        if record.image_id == "i1":
            raise ImageError("truncated JPEG")
        if record.image_id == "i2":
            raise ValueError("decoder bug")
        return np.zeros((40, 50, 3), np.uint8)


def test_loader_reports_bad_images_and_keeps_the_rest() -> None:
    dataset = HalfBroken()
    batch, errors = load_images(dataset, dataset.index(), Preprocess(36, 32))
    assert batch.image_ids == ["i0", "i3"] and batch.labels.tolist() == [0, 3]
    assert batch.pixels.shape == (2, 3, 32, 32)
    assert [(e.image_id, e.source) for e in errors] == [("i1", "file1.jpg"), ("i2", "file2.jpg")]
    assert errors[0].reason == "truncated JPEG" and "ValueError: decoder bug" in errors[1].reason


def test_digits_are_sklearns_images_upsampled_with_a_fixed_split() -> None:
    from sklearn.datasets import load_digits

    from benchmark.data.digits import DigitImages

    bunch = load_digits()
    val, train = DigitImages("val").index(), DigitImages("train").index()
    assert len(val) + len(train) == len(bunch.target) == 1797
    assert [r.image_id for r in val[:3]] == ["digit-0004", "digit-0009", "digit-0014"]
    assert {r.image_id for r in val}.isdisjoint(r.image_id for r in train)
    assert [r.label for r in val[:3]] == bunch.target[[4, 9, 14]].tolist()
    image = DigitImages().decode(val[0])
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 2])
    # bilinear upsampling of the grey levels scaled to 0-255 (half-pixel centres), rounded to uint8
    grey = torch.from_numpy(np.rint(bunch.images[4] * 255 / 16))[None, None]
    expected = torch.nn.functional.interpolate(grey, size=32, mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(image[..., 0] - expected).max() <= 1.0
    spec = spec_for(kind="digits", limit=5)
    assert Preprocess.from_spec(spec.dataset) == Preprocess(32, 32)  # no resize, no crop
    pixels, _ = Preprocess.from_spec(spec.dataset)(image)
    assert torch.equal(pixels, torch.from_numpy(image).permute(2, 0, 1).float() / 255)
    with pytest.raises(ImageError, match="not an image of the digits dataset"):
        DigitImages().decode(ImageRecord("digit-9999", "x"))
