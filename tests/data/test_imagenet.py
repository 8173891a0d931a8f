"""ImageNet readers on the fixtures: class folders, Kaggle CSV and plain labels; order, labels, bad images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torchvision

from benchmark.config import validate_job
from benchmark.data import AnnotationError, Preprocess, build_dataset, load_images, select_records
from benchmark.data.fixtures import GOLDFISH, IMAGENET_IMAGES, TENCH, TOILET_TISSUE, imagenet_name
from benchmark.data.imagenet import WNIDS_FILE, ImageNetVal, read_class_list

CATEGORIES = torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"]
UNREADABLE = {imagenet_name(5), imagenet_name(7)}  # truncated, not an image


def spec_for(**dataset):
    return validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random"},
                         "dataset": {"kind": "imagenet", "crop": 32, **dataset}, "methods": [{"name": "gradient"}]})


def test_shipped_class_list_is_the_1000_sorted_wnids_of_torchvisions_head() -> None:
    wnids = read_class_list()
    assert len(wnids) == 1000 and len(set(wnids)) == 1000 and wnids == sorted(wnids)
    assert WNIDS_FILE.read_text().split() == wnids
    # torchvision's pretrained head: index 0 tench, 1 goldfish, 999 toilet tissue
    assert [CATEGORIES[wnids.index(w)] for w in (TENCH, GOLDFISH, TOILET_TISSUE)] == ["tench", "goldfish", "toilet tissue"]


def test_class_folders_are_merged_in_file_name_order(fixture_root: Path) -> None:
    folder = fixture_root / "imagenet" / "val"
    records = build_dataset(spec_for(root=str(fixture_root / "imagenet"))).index()
    on_disk = sorted(
        (name, wnid) for wnid in os.listdir(folder) for name in os.listdir(folder / wnid) if name.endswith(".JPEG")
    )
    assert [r.image_id for r in records] == [Path(name).stem for name, _ in on_disk]  # notes.txt is skipped
    assert [r.label for r in records] == [read_class_list().index(wnid) for _, wnid in on_disk]
    assert [r.source for r in records] == [str(folder / wnid / name) for name, wnid in on_disk]
    # not ImageFolder's folder-by-folder order
    assert [r.image_id for r in records] != [Path(n).stem for _, n in sorted((w, n) for n, w in on_disk)]


@pytest.mark.parametrize("labels_file", [None, "val_labels.txt"], ids=["kaggle-csv", "plain-labels"])
def test_flat_folder_with_labels_file(fixture_root: Path, labels_file: str | None) -> None:
    root = fixture_root / "imagenet_flat"
    dataset = build_dataset(spec_for(root=str(root), labels_file=labels_file))
    records = dataset.index()
    expected = {imagenet_name(n): read_class_list().index(w) for n, w, *_ in IMAGENET_IMAGES} | {imagenet_name(9): 999}
    assert [r.image_id for r in records] == sorted(expected)  # the CSV is unsorted on disk
    assert {r.image_id: r.label for r in records} == expected
    assert dataset.describe()["labels_file"].endswith(labels_file or "LOC_val_solution.csv")


def test_plain_labels_accept_wnids_and_names_without_extension(tmp_path: Path, fixture_root: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_text(f"# comment\n{imagenet_name(3)} {GOLDFISH}\n\n{imagenet_name(1)}.JPEG 0\n")
    dataset = ImageNetVal(fixture_root / "imagenet_flat", labels_file=str(labels))
    assert [(r.image_id, r.label, Path(r.source).name) for r in dataset.index()] == [
        (imagenet_name(1), 0, f"{imagenet_name(1)}.JPEG"),
        (imagenet_name(3), 1, f"{imagenet_name(3)}.JPEG"),
    ]


@pytest.mark.parametrize("layout", ["imagenet", "imagenet_flat"])
def test_bad_images_become_errors_and_the_rest_load(fixture_root: Path, layout: str) -> None:
    spec = spec_for(root=str(fixture_root / layout))
    dataset = build_dataset(spec)
    records = select_records(spec, dataset)
    batch, errors = load_images(dataset, records, Preprocess.from_spec(spec.dataset))
    missing = {imagenet_name(9)} if layout == "imagenet_flat" else set()
    assert {e.image_id for e in errors} == UNREADABLE | missing
    assert batch.image_ids == [r.image_id for r in records if r.image_id not in UNREADABLE | missing]
    assert batch.labels.tolist() == [r.label for r in records if r.image_id in batch.image_ids]
    assert batch.pixels.shape == (len(batch), 3, 32, 32) and batch.targets is None
    reasons = {e.image_id: e.reason for e in errors}
    assert "truncated" in reasons[imagenet_name(5)] and "not a readable image" in reasons[imagenet_name(7)]
    assert all(e.source in e.reason for e in errors)  # the reason names the file


def test_first_n_and_the_additional_images_are_ranges_of_the_sorted_order(fixture_root: Path) -> None:
    root = str(fixture_root / "imagenet_flat")
    first = select_records(spec_for(root=root, limit=3), build_dataset(spec_for(root=root)))
    more = select_records(spec_for(root=root, offset=3, limit=4), build_dataset(spec_for(root=root)))
    assert [r.image_id for r in first] == [imagenet_name(n) for n in (1, 2, 3)]
    assert [r.image_id for r in more] == [imagenet_name(n) for n in (4, 5, 6, 7)]


def test_custom_class_list_and_the_models_class_count_must_agree(tmp_path: Path, fixture_root: Path) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text(f"{TOILET_TISSUE} toilet tissue\n{TENCH} tench, Tinca tinca\n{GOLDFISH} goldfish\n")
    spec = validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random", "num_classes": 3},
                         "dataset": {"kind": "imagenet", "root": str(fixture_root / "imagenet"), "class_list": str(classes)},
                         "methods": [{"name": "gradient"}]})
    labels = {r.image_id: r.label for r in build_dataset(spec).index()}
    assert labels[imagenet_name(1)] == 1 and labels[imagenet_name(2)] == 0 and labels[imagenet_name(3)] == 2
    with pytest.raises(AnnotationError, match=r"classes.txt: 3 classes, but the model has 1000 outputs"):
        build_dataset(spec_for(root=str(fixture_root / "imagenet"), class_list=str(classes))).index()


def test_kaggle_layout_below_root_is_found(tmp_path: Path, fixture_root: Path) -> None:
    images = tmp_path / "ILSVRC" / "Data" / "CLS-LOC" / "val"
    images.mkdir(parents=True)
    for name in os.listdir(fixture_root / "imagenet_flat" / "val"):
        (images / name).write_bytes((fixture_root / "imagenet_flat" / "val" / name).read_bytes())
    (tmp_path / "LOC_val_solution.csv").write_text((fixture_root / "imagenet_flat" / "LOC_val_solution.csv").read_text())
    records = ImageNetVal(tmp_path).index()
    assert len(records) == 9 and Path(records[0].source).parent == images


def test_a_folder_without_classes_or_labels_is_refused(tmp_path: Path) -> None:
    (tmp_path / "val").mkdir()
    with pytest.raises(AnnotationError, match="dataset.labels_file"):
        ImageNetVal(tmp_path).index()
    with pytest.raises(FileNotFoundError, match="dataset.root"):
        ImageNetVal(tmp_path / "nowhere").index()


def image_folder(root: Path, classes: list[str], per_class: int = 2) -> Path:
    """An ImageFolder of tiny JPEGs: ``root/val/<class>/<class>_<i>.jpg``."""
    from PIL import Image

    for position, name in enumerate(classes):
        (root / "val" / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (40, 40), (position * 20 % 255, i * 60, 90)).save(root / "val" / name / f"{name}_{i}.jpg")
    return root


@pytest.mark.parametrize("classes", [[str(i) for i in range(12)], ["dog", "cat"]], ids=["digits", "names"])
def test_class_folders_that_are_not_wnids_follow_torchvision_image_folder(tmp_path: Path, classes: list[str]) -> None:
    root = image_folder(tmp_path / "data", classes)
    spec = validate_job({"name": "t", "model": {"name": "resnet34", "weights": "random", "num_classes": len(classes)},
                         "dataset": {"kind": "imagenet", "root": str(root), "crop": 32}, "methods": [{"name": "gradient"}]})
    dataset = build_dataset(spec)
    records = dataset.index()
    reference = torchvision.datasets.ImageFolder(str(root / "val"))  # the convention: sorted folder names
    assert dataset.class_names() == reference.classes
    expected = {Path(path).stem: label for path, label in reference.samples}
    assert {r.image_id: r.label for r in records} == expected and len(records) == 2 * len(classes)
    assert "ImageFolder" in dataset.describe()["classes_from"]
    if classes[0] == "0":
        assert dataset.class_names()[:3] == ["0", "1", "10"]  # string order, as torchvision sorts


def test_image_folder_classes_must_match_the_models_outputs(tmp_path: Path) -> None:
    root = image_folder(tmp_path / "data", ["cat", "dog"])
    with pytest.raises(AnnotationError) as caught:
        build_dataset(spec_for(root=str(root))).index()  # resnet34 with its 1000 ImageNet outputs
    message = str(caught.value)
    assert message.startswith(str(root / "val")) and "0 = 'cat', 1 = 'dog'" in message
    assert "2 classes, but the model has 1000 outputs" in message and "model.num_classes: 2" in message
