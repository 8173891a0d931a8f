"""MS-COCO through pycocotools: ``annotations/instances_<split>2017.json`` + ``<split>2017/*.jpg``.

Canonical order: sorted by image id. Class index: position of the category id among the
sorted category ids (the 80 detection classes of ids 1..90 become 0..79). Every image of the
file is indexed, with or without boxes (an image without annotations has no positive label);
its crop targets come from the boxes as in supplement A.3 (``boxes.crop_targets``).

The json is validated before pycocotools indexes it, so that a malformed file fails before any
work with the file and the key (``annotations[17].bbox``) or line, not with a KeyError deep
inside ``COCO.createIndex``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Any

from .base import AnnotationError, ImageRecord
from .boxes import BoxAnnotation, BoxDataset
from .images import resolve


def split_folder_name(split: str) -> str:
    """COCO's folder/file stem of a split: 'val' -> 'val2017'; names with a year stay as they are."""
    return split if split[-4:].isdigit() else f"{split}2017"


def read_coco_json(path: Path) -> dict[str, Any]:
    """The parsed file, or AnnotationError naming the file and the line/column of a syntax error."""
    try:
        with path.open("rb") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: annotation file not found (set dataset.annotation_file or dataset.root)") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read ({error.strerror or error})") from None
    except json.JSONDecodeError as error:
        raise AnnotationError(f"{path}:{error.lineno}:{error.colno}: not valid JSON: {error.msg}") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not a UTF-8 JSON file ({error})") from None
    validate_coco(data, path)
    return data


def _fail(path: Path, key: str, message: str) -> AnnotationError:
    return AnnotationError(f"{path}: {key}: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_coco(data: Any, path: Path) -> None:
    """Check what the reader and pycocotools rely on; raise AnnotationError naming the first bad key."""
    if not isinstance(data, dict):
        raise _fail(path, "(top level)", "expected an object with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise _fail(path, key, "missing" if key not in data else f"expected a list, got {type(data[key]).__name__}")
    image_ids: set[int] = set()
    for i, image in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(image, dict) or not _is_int(image.get("id")):
            raise _fail(path, f"{where}.id", "missing or not an integer")
        if not isinstance(image.get("file_name"), str) or not image["file_name"]:
            raise _fail(path, f"{where}.file_name", "missing or not a string")
        if image["id"] in image_ids:
            raise _fail(path, f"{where}.id", f"duplicate image id {image['id']}")
        image_ids.add(image["id"])
    category_ids: set[int] = set()
    for i, category in enumerate(data["categories"]):
        where = f"categories[{i}]"
        if not isinstance(category, dict) or not _is_int(category.get("id")):
            raise _fail(path, f"{where}.id", "missing or not an integer")
        if not isinstance(category.get("name"), str):
            raise _fail(path, f"{where}.name", "missing or not a string")
        if category["id"] in category_ids:
            raise _fail(path, f"{where}.id", f"duplicate category id {category['id']}")
        category_ids.add(category["id"])
    annotation_ids: set[int] = set()
    for i, annotation in enumerate(data["annotations"]):
        where = f"annotations[{i}]"
        if not isinstance(annotation, dict):
            raise _fail(path, where, "expected an object")
        if not _is_int(annotation.get("id")):
            raise _fail(path, f"{where}.id", "missing or not an integer")
        if annotation["id"] in annotation_ids:
            raise _fail(path, f"{where}.id", f"duplicate annotation id {annotation['id']}")
        annotation_ids.add(annotation["id"])
        if annotation.get("image_id") not in image_ids:
            raise _fail(path, f"{where}.image_id", f"{annotation.get('image_id')!r} is not the id of an image in 'images'")
        if annotation.get("category_id") not in category_ids:
            raise _fail(
                path, f"{where}.category_id", f"{annotation.get('category_id')!r} is not the id of a category in 'categories'"
            )
        bbox = annotation.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise _fail(path, f"{where}.bbox", f"expected [x, y, width, height] with width, height >= 0, got {bbox!r}")
        if not isinstance(annotation.get("iscrowd", 0), (int, bool)):
            raise _fail(path, f"{where}.iscrowd", f"expected 0 or 1, got {annotation['iscrowd']!r}")


def coco_api(data: dict[str, Any]):
    """A pycocotools ``COCO`` over already-parsed (and validated) data, without its console chatter."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(BoxDataset):
    kind = "coco"

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        annotation_file: str | None = None,
        images_dir: str | None = None,
        num_classes: int = 80,
        box_fraction: float = 0.4,
        skip_flagged_boxes: bool = False,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        stem = split_folder_name(split)
        self.annotation_path = resolve(self.root, annotation_file, self.root / "annotations" / f"instances_{stem}.json")
        self.images_path = resolve(self.root, images_dir, self.root / stem)
        self.num_classes, self.box_fraction, self.skip_flagged_boxes = num_classes, box_fraction, skip_flagged_boxes
        self._categories: list[str] | None = None

    def index(self) -> list[ImageRecord]:
        coco = coco_api(read_coco_json(self.annotation_path))
        category_ids = sorted(coco.getCatIds())
        if len(category_ids) != self.num_classes:
            raise AnnotationError(
                f"{self.annotation_path}: categories: {len(category_ids)} categories, but the model has "
                f"{self.num_classes} outputs (model.num_classes)"
            )
        position = {category_id: i for i, category_id in enumerate(category_ids)}
        self._categories = [coco.cats[c]["name"] for c in category_ids]
        records = []
        for image_id in sorted(coco.getImgIds()):
            info = coco.imgs[image_id]
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=[image_id], iscrowd=None))
            boxes = BoxAnnotation.from_lists(
                [position[a["category_id"]] for a in annotations],
                [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)],
                [bool(a.get("iscrowd", 0)) for a in annotations],
            )
            records.append(ImageRecord(str(image_id), str(self.images_path / info["file_name"]), None, boxes))
        return records

    def class_names(self) -> list[str] | None:
        return self._categories

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "annotation_file": str(self.annotation_path),
            "images": str(self.images_path),
            "classes": self.num_classes,
            "box_fraction": self.box_fraction,
            "skip_flagged_boxes": self.skip_flagged_boxes,
        }
