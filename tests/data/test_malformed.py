"""Malformed annotation and labels files fail at index time (before any work), naming the file and line or key."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from benchmark.config import SpecError, validate_job
from benchmark.data import AnnotationError, build_dataset


def spec(kind: str, root: Path, **dataset):
    return validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": {"kind": kind, "root": str(root), "crop": 32, **dataset},
                         "methods": [{"name": "gradient"}]})


def index_error(kind: str, root: Path, **dataset) -> str:
    with pytest.raises(AnnotationError) as caught:
        build_dataset(spec(kind, root, **dataset)).index()
    return str(caught.value)


def test_coco_json_syntax_error_names_file_line_and_column(fixture_root: Path) -> None:
    path = fixture_root / "malformed" / "coco_bad_json" / "annotations" / "instances_val2017.json"
    with pytest.raises(json.JSONDecodeError) as reference:
        json.loads(path.read_text())
    message = index_error("coco", path.parents[1])
    assert message.startswith(f"{path}:{reference.value.lineno}:{reference.value.colno}: not valid JSON")


@pytest.mark.parametrize(
    ("case", "key"),
    [
        ("coco_unknown_category", "annotations[1].category_id: 12 is not the id of a category"),
        ("coco_bad_bbox", "annotations[2].bbox: expected [x, y, width, height]"),
        ("coco_no_categories", "categories: missing"),
    ],
)
def test_coco_bad_keys_are_named(fixture_root: Path, case: str, key: str) -> None:
    root = fixture_root / "malformed" / case
    assert index_error("coco", root).startswith(f"{root / 'annotations' / 'instances_val2017.json'}: {key}")


def test_coco_annotation_file_not_found(tmp_path: Path) -> None:
    assert "annotation file not found" in index_error("coco", tmp_path)


def test_voc_xml_syntax_error_names_file_and_line(fixture_root: Path) -> None:
    path = fixture_root / "malformed" / "voc_bad_xml" / "VOC2012" / "Annotations" / "2008_000003.xml"
    with pytest.raises(ET.ParseError) as reference:
        ET.parse(path)
    line, column = reference.value.position
    assert index_error("voc", path.parents[2]).startswith(f"{path}:{line}:{column}: malformed XML")


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("voc_unknown_class", "2008_000003.xml: object 2: <name> 'spaceship' is not one of the 20 VOC classes"),
        ("voc_bad_box", "2008_000003.xml: object 1: <xmax> is missing or not a number (got 'abc')"),
        ("voc_missing_xml", "2008_000099.xml: annotation file not found (listed in the split file)"),
    ],
)
def test_voc_bad_objects_are_named(fixture_root: Path, case: str, expected: str) -> None:
    root = fixture_root / "malformed" / case
    assert index_error("voc", root) == f"{root / 'VOC2012' / 'Annotations'}/{expected}"


def test_voc_split_file_problems(tmp_path: Path, fixture_root: Path) -> None:
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    split = tmp_path / "ImageSets" / "Main" / "val.txt"
    split.write_text("2008_000002\n2008_000003 -1\n")
    assert index_error("voc", tmp_path) == f"{split}:2: expected one image id per line, got '2008_000003 -1'"
    split.write_text("2008_000002\n\n2008_000002\n")
    assert index_error("voc", tmp_path) == f"{split}:3: image id '2008_000002' already listed at line 1"
    assert index_error("voc", fixture_root / "voc", split="test").endswith("split file not found (dataset.split is 'test')")


def test_kaggle_csv_unknown_wnid_names_the_line(fixture_root: Path) -> None:
    root = fixture_root / "malformed" / "imagenet_bad_csv"
    assert index_error("imagenet", root) == f"{root / 'LOC_val_solution.csv'}:3: 'n99999999' is not a class of the class list"


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ("val_labels.txt", ":2: class index 1000 is outside 0..999"),
        ("val_labels_columns.txt", ":2: expected '<file name> <class index or wnid>', got 'ILSVRC2012_val_00000002.JPEG'"),
    ],
)
def test_plain_labels_problems_name_the_line(fixture_root: Path, labels: str, expected: str) -> None:
    root = fixture_root / "malformed" / "imagenet_bad_labels"
    assert index_error("imagenet", root, labels_file=labels) == f"{root / labels}{expected}"


def test_kaggle_csv_header_and_duplicates(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    labels = tmp_path / "LOC_val_solution.csv"
    labels.write_text("Image,Label\n")
    assert index_error("imagenet", tmp_path) == f"{labels}:1: expected the header 'ImageId,PredictionString', got ['Image', 'Label']"
    labels.write_text("ImageId,PredictionString\na,n01440764 1 1 2 2 \nb,n01440764 1 1 2 \n")
    assert index_error("imagenet", tmp_path).startswith(f"{labels}:3: PredictionString must be groups of")
    labels.write_text("ImageId,PredictionString\na,n01440764 1 1 2 2 \na,n01443537 1 1 2 2\n")
    assert index_error("imagenet", tmp_path) == f"{labels}:3: 'a.JPEG' is already labelled at line 2"


def test_unknown_class_folder_is_named(fixture_root: Path) -> None:
    root = fixture_root / "malformed" / "imagenet_unknown_folder"
    assert index_error("imagenet", root) == f"{root / 'val' / 'n99999999'}: folder name 'n99999999' is not a class of the class list"


def test_class_list_with_a_duplicate_names_the_line(tmp_path: Path, fixture_root: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("n01440764\nn01443537\nn01440764\n")
    message = index_error("imagenet", fixture_root / "imagenet", class_list=str(classes))
    assert message == f"{classes}:3: class 'n01440764' already listed at line 1"


@pytest.mark.parametrize(
    ("dataset", "message"),
    [
        ({"kind": "imagenet", "root": "x", "annotation_file": "a.json"}, "dataset.annotation_file is only used with dataset kind coco"),
        ({"kind": "coco", "root": "x", "labels_file": "l.txt"}, "dataset.labels_file is only used with dataset kind imagenet"),
        ({"kind": "voc", "root": "x", "box_fraction": 1.5}, "dataset.box_fraction: Input should be less than or equal to 1"),
        ({"kind": "voc"}, "dataset.root is required for dataset kind 'voc'"),
    ],
)
def test_misplaced_dataset_keys_fail_validation_naming_the_key(dataset: dict, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        validate_job({"name": "t", "model": {"name": "resnet34"}, "dataset": dataset, "methods": [{"name": "gradient"}]})
    assert message in str(caught.value)
