"""VOC reader on the fixtures: split-file order, xml boxes (1-based), crop labels, bad images."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from benchmark.config import validate_job
from benchmark.data import Preprocess, build_dataset, load_images, select_records
from benchmark.data.voc import VOC_CLASSES, VocDetection, find_voc_folder


def voc_spec(root: Path, **dataset):
    return validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": {"kind": "voc", "root": str(root / "voc"), "crop": 32, **dataset},
                         "methods": [{"name": "gradient"}]})


def test_the_twenty_classes_in_alphabetical_order() -> None:
    assert len(VOC_CLASSES) == 20 and list(VOC_CLASSES) == sorted(VOC_CLASSES)
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[14] == "person" and VOC_CLASSES[19] == "tvmonitor"


def test_order_is_the_split_files_and_boxes_are_the_xmls(fixture_root: Path) -> None:
    folder = fixture_root / "voc" / "VOC2012"
    records = build_dataset(voc_spec(fixture_root)).index()
    listed = (folder / "ImageSets" / "Main" / "val.txt").read_text().split()
    assert [r.image_id for r in records] == listed and listed != sorted(listed)
    for record in records:
        objects = ET.parse(folder / "Annotations" / f"{record.image_id}.xml").getroot().findall("object")
        assert record.annotation.classes.tolist() == [VOC_CLASSES.index(o.findtext("name")) for o in objects]
        corners = [[float(o.find("bndbox").findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] for o in objects]
        # 1-based inclusive pixels: the box covers [xmin - 1, xmax] x [ymin - 1, ymax]
        assert record.annotation.boxes.tolist() == [[x0 - 1, y0 - 1, x1, y1] for x0, y0, x1, y1 in corners]
        assert record.annotation.flagged.tolist() == [o.findtext("difficult") == "1" for o in objects]
        assert record.source == str(folder / "JPEGImages" / f"{record.image_id}.jpg")


def test_crop_labels_and_bad_images(fixture_root: Path) -> None:
    spec = voc_spec(fixture_root)
    dataset = build_dataset(spec)
    batch, errors = load_images(dataset, select_records(spec, dataset), Preprocess.from_spec(spec.dataset))
    assert {e.image_id for e in errors} == {"2008_000009", "2008_000015"}  # truncated, missing
    assert "truncated" in next(e.reason for e in errors if e.image_id == "2008_000009")
    assert next(e.reason for e in errors if e.image_id == "2008_000015").endswith("2008_000015.jpg: file not found")
    positives = {i: {VOC_CLASSES[c] for c in np.flatnonzero(t.numpy())} for i, t in zip(batch.image_ids, batch.targets)}
    # 2008_000008, 64x48 -> 42x32, crop x in [5, 37]: person x [2.63, 13.13] has 8.13/10.5 = 77 % inside (difficult),
    # dog x [15.09, 36.75] is inside
    assert positives["2008_000008"] == {"person", "dog"}
    assert positives["2008_000016"] == set()  # no objects
    assert batch.targets.shape == (6, 20)
    skipping = build_dataset(voc_spec(fixture_root, skip_flagged_boxes=True))
    records = [r for r in skipping.index() if r.image_id == "2008_000008"]
    assert np.flatnonzero(load_images(skipping, records, Preprocess(32, 32))[0].targets[0].numpy()).tolist() == [11]


def test_root_may_be_the_devkit_or_the_year_folder(fixture_root: Path, tmp_path: Path) -> None:
    year = fixture_root / "voc" / "VOC2012"
    assert find_voc_folder(year, "val") == year and find_voc_folder(fixture_root / "voc", "val") == year
    (tmp_path / "VOCdevkit" / "VOC2007" / "ImageSets").mkdir(parents=True)
    (tmp_path / "VOCdevkit" / "VOC2012" / "ImageSets").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="several VOC folders"):
        find_voc_folder(tmp_path, "val")
    assert len(VocDetection(fixture_root / "voc", split="train").index()) == 8
