"""PASCAL VOC: ``ImageSets/Main/<split>.txt``, ``Annotations/<id>.xml``, ``JPEGImages/<file>``.

Canonical order: the order of the split file. Classes: the 20 VOC classes in their standard
alphabetical order. VOC boxes are 1-based inclusive pixel indices; as continuous coordinates
a box covers [xmin - 1, xmax] × [ymin - 1, ymax], which is what the crop rule measures.

Every annotation file of the split is parsed at index time, so a missing or malformed file
fails before any work with its path and line (XML syntax) or object number.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from .base import AnnotationError, ImageRecord
from .boxes import BoxAnnotation, BoxDataset

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


def find_voc_folder(root: Path, split: str) -> Path:
    """The VOC20xx folder: root itself, or the single VOC* folder under root or root/VOCdevkit."""
    if (root / "ImageSets").is_dir():
        return root
    candidates = sorted(p for p in [*root.glob("VOC*"), *root.glob("VOCdevkit/VOC*")] if (p / "ImageSets").is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise FileNotFoundError(
            f"dataset.root: {root} holds no PASCAL VOC folder (expected ImageSets/Main/{split}.txt, Annotations/, JPEGImages/)"
        )
    raise FileNotFoundError(
        f"dataset.root: {root} holds several VOC folders ({', '.join(str(c) for c in candidates)}); point it at one"
    )


def read_split_file(path: Path) -> list[str]:
    """Image ids of ``ImageSets/Main/<split>.txt``, one per line, in file order."""
    try:
        text = path.read_text()
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read the split file ({error.strerror or error})") from None
    ids: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if len(line.split()) != 1 or "/" in line:
            raise AnnotationError(f"{path}:{number}: expected one image id per line, got {raw!r}")
        if line in seen:
            raise AnnotationError(f"{path}:{number}: image id '{line}' already listed at line {seen[line]}")
        seen[line] = number
        ids.append(line)
    return ids


def _number(node: ET.Element, tag: str, where: str) -> float:
    child = node.find(tag)
    try:
        return float(child.text)  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError):
        text = None if child is None else child.text
        raise AnnotationError(f"{where}: <{tag}> is missing or not a number (got {text!r})") from None


def read_voc_xml(path: Path, class_index: dict[str, int]) -> tuple[str | None, BoxAnnotation]:
    """The image file name (``<filename>``, may be absent) and the boxes of one annotation file."""
    try:
        tree = ET.parse(path)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found (listed in the split file)") from None
    except ET.ParseError as error:
        line, column = error.position
        raise AnnotationError(f"{path}:{line}:{column}: malformed XML: {error}") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read ({error.strerror or error})") from None
    root = tree.getroot()
    if root.tag != "annotation":
        raise AnnotationError(f"{path}: root element is <{root.tag}>, expected <annotation>")
    filename = root.findtext("filename")
    classes, boxes, flagged = [], [], []
    for number, item in enumerate(root.findall("object"), start=1):
        where = f"{path}: object {number}"
        name = (item.findtext("name") or "").strip()
        if name not in class_index:
            raise AnnotationError(f"{where}: <name> '{name}' is not one of the 20 VOC classes")
        box = item.find("bndbox")
        if box is None:
            raise AnnotationError(f"{where}: <bndbox> is missing")
        xmin, ymin, xmax, ymax = (_number(box, tag, where) for tag in ("xmin", "ymin", "xmax", "ymax"))
        if xmax < xmin or ymax < ymin:
            raise AnnotationError(f"{where}: <bndbox> has xmax < xmin or ymax < ymin ({xmin}, {ymin}, {xmax}, {ymax})")
        difficult = (item.findtext("difficult") or "0").strip()
        classes.append(class_index[name])
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])  # 1-based inclusive pixels -> continuous
        flagged.append(difficult == "1")
    return (filename.strip() if filename else None), BoxAnnotation.from_lists(classes, boxes, flagged)


class VocDetection(BoxDataset):
    kind = "voc"

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        num_classes: int = 20,
        box_fraction: float = 0.4,
        skip_flagged_boxes: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.num_classes, self.box_fraction, self.skip_flagged_boxes = num_classes, box_fraction, skip_flagged_boxes
        self._folder: Path | None = None

    def folder(self) -> Path:
        if self._folder is None:
            self._folder = find_voc_folder(self.root, self.split)
        return self._folder

    def index(self) -> list[ImageRecord]:
        if self.num_classes != len(VOC_CLASSES):
            raise AnnotationError(
                f"dataset kind 'voc' has {len(VOC_CLASSES)} classes, but the model has {self.num_classes} outputs "
                "(model.num_classes)"
            )
        folder = self.folder()
        split_file = folder / "ImageSets" / "Main" / f"{self.split}.txt"
        if not split_file.is_file():
            raise AnnotationError(f"{split_file}: split file not found (dataset.split is '{self.split}')")
        class_index = {name: i for i, name in enumerate(VOC_CLASSES)}
        records = []
        for image_id in read_split_file(split_file):
            filename, boxes = read_voc_xml(folder / "Annotations" / f"{image_id}.xml", class_index)
            source = folder / "JPEGImages" / (filename or f"{image_id}.jpg")
            records.append(ImageRecord(image_id, str(source), None, boxes))
        return records

    def class_names(self) -> list[str]:
        return list(VOC_CLASSES)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "folder": str(self._folder or self.root),
            "split": self.split,
            "classes": self.num_classes,
            "box_fraction": self.box_fraction,
            "skip_flagged_boxes": self.skip_flagged_boxes,
        }
