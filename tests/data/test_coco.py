"""COCO reader on the fixtures, against pycocotools' own API; crop labels; bad images."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO

from benchmark.config import validate_job
from benchmark.data import Preprocess, build_dataset, load_images, select_records
from benchmark.data.coco import CocoDetection, split_folder_name


def coco_spec(root: Path, **dataset):
    return validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": {"kind": "coco", "root": str(root / "coco"), "crop": 32, **dataset},
                         "methods": [{"name": "gradient"}]})


@pytest.fixture(scope="module")
def reference(fixture_root: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(fixture_root / "coco" / "annotations" / "instances_val2017.json"))


def test_order_is_by_image_id_and_boxes_are_pycocotools(fixture_root: Path, reference: COCO) -> None:
    records = build_dataset(coco_spec(fixture_root)).index()
    assert [int(r.image_id) for r in records] == sorted(reference.getImgIds())
    category_ids = sorted(reference.getCatIds())
    assert len(category_ids) == 80 and category_ids[-1] == 90  # COCO's ids have gaps: index != id
    for record in records:
        info = reference.loadImgs(int(record.image_id))[0]
        assert record.source == str(fixture_root / "coco" / "val2017" / info["file_name"]) and record.label is None
        annotations = reference.loadAnns(reference.getAnnIds(imgIds=int(record.image_id)))
        assert record.annotation.classes.tolist() == [category_ids.index(a["category_id"]) for a in annotations]
        assert record.annotation.boxes.tolist() == [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)]
        assert record.annotation.flagged.tolist() == [bool(a["iscrowd"]) for a in annotations]


def test_crop_labels_of_the_fixture_images(fixture_root: Path, reference: COCO) -> None:
    spec = coco_spec(fixture_root)
    dataset = build_dataset(spec)
    batch, _ = load_images(dataset, select_records(spec, dataset), Preprocess.from_spec(spec.dataset))
    category_ids = sorted(reference.getCatIds())
    index = {reference.cats[c]["name"]: i for i, c in enumerate(category_ids)}
    positives = {image_id: set(np.flatnonzero(t.numpy()).tolist()) for image_id, t in zip(batch.image_ids, batch.targets)}
    # 139 (64x48 -> 42x32, crop x in [5, 37]): person inside; car x [0, 9.19] has 4.19/9.19 = 46 % inside
    assert positives["139"] == {index["person"], index["car"]}
    # 632 (80x60 -> 42x32, crop x in [5, 37]): dog x [10.5, 31.5] inside; person x [0, 6.3]: 1.3/6.3 = 21 % -> no
    assert positives["632"] == {index["dog"]}
    assert positives["802"] == set()  # no annotations: decoded, no positive label
    assert batch.targets.shape == (len(batch), 80) and batch.labels.tolist() == [-1] * len(batch)
    assert dataset.class_names()[:3] == ["person", "bicycle", "car"]


def test_crowd_boxes_are_skipped_on_request(fixture_root: Path) -> None:
    spec = coco_spec(fixture_root, skip_flagged_boxes=True, box_fraction=0.5)
    dataset = build_dataset(spec)
    records = [r for r in dataset.index() if r.image_id == "139"]
    batch, _ = load_images(dataset, records, Preprocess.from_spec(spec.dataset))
    assert np.flatnonzero(batch.targets[0].numpy()).tolist() == [0]  # car (46 %) fails 50 %, person stays


def test_bad_images_become_errors_and_the_rest_load(fixture_root: Path) -> None:
    spec = coco_spec(fixture_root)
    dataset = build_dataset(spec)
    batch, errors = load_images(dataset, select_records(spec, dataset), Preprocess.from_spec(spec.dataset))
    reasons = {e.image_id: e.reason for e in errors}
    images = fixture_root / "coco" / "val2017"
    assert set(reasons) == {"776", "785"}
    assert reasons["776"].startswith(f"{images / '000000000776.jpg'}: corrupt or truncated image") and "truncated" in reasons["776"]
    assert reasons["785"] == f"{images / '000000000785.jpg'}: file not found"
    assert batch.image_ids == ["139", "285", "632", "724", "802", "872"]  # grayscale, PNG, CMYK, no-boxes all load


def test_paths_follow_the_split_and_can_be_overridden(fixture_root: Path, tmp_path: Path) -> None:
    assert split_folder_name("val") == "val2017" and split_folder_name("val2014") == "val2014"
    train = build_dataset(coco_spec(fixture_root, split="train"))
    assert len(train.index()) == 8 and train.describe()["images"].endswith("train2017")
    moved = tmp_path / "instances.json"
    moved.write_bytes((fixture_root / "coco" / "annotations" / "instances_val2017.json").read_bytes())
    dataset = CocoDetection(fixture_root / "coco", annotation_file=str(moved), images_dir="train2017")
    assert len(dataset.index()) == 8 and dataset.index()[0].source.startswith(str(fixture_root / "coco" / "train2017"))
