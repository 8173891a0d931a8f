"""``benchmark fixtures DIR``: tiny datasets in the real ImageNet / COCO / VOC on-disk formats.

Real JPEG files written by PIL, a COCO instances json that pycocotools loads, VOC xml files,
Kaggle and plain labels files, and the bad cases a real dataset copy can contain: a truncated
JPEG, bytes that are no image, a PNG and a CMYK JPEG behind JPEG names, grayscale JPEGs, files
named by the annotations but missing, images without annotations; ``imagenet_special/`` adds a
16-bit grayscale PNG and a named pipe with an image name (where the platform has them). Malformed annotation and
labels files live under ``malformed/``, one fault per dataset, for the "fails before any work"
checks. Everything is a pure function of the code: two calls write identical datasets.

Images are 40–80 px; each box is painted as a rectangle in its class colour on a smooth
background, so a fine-tuned classifier has something to learn.
"""

from __future__ import annotations

import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image


# Real ILSVRC-2012 wnids at class indices 0, 1 and 999 of the standard order.
TENCH, GOLDFISH, TOILET_TISSUE = "n01440764", "n01443537", "n15075141"

# How an image file is written: the bad cases of the issue, and the good one.
GOOD, GRAY, CMYK, PNG, TRUNCATED, NOT_IMAGE, MISSING = "good", "gray", "cmyk", "png", "truncated", "not_image", "missing"
PNG16 = "png16"
NOTES = {
    PNG16: "16-bit grayscale PNG behind a JPEG name (scaled to 8 bits)",
    GOOD: "RGB JPEG",
    GRAY: "grayscale JPEG (decoded to RGB)",
    CMYK: "CMYK JPEG (decoded to RGB)",
    PNG: "PNG file behind a JPEG name (decoded by content)",
    TRUNCATED: "truncated JPEG (error row)",
    NOT_IMAGE: "bytes that are no image (error row)",
    MISSING: "named by the annotations but missing (error row)",
}
UNREADABLE = (TRUNCATED, NOT_IMAGE, MISSING)


@dataclass(frozen=True)
class FixtureFile:
    path: Path
    note: str


@dataclass(frozen=True)
class Picture:
    """One fixture image: size, how it is stored, and its boxes (class name, x0, y0, x1, y1; continuous)."""

    name: str
    width: int
    height: int
    how: str = GOOD
    boxes: tuple[tuple[str, float, float, float, float], ...] = ()


def class_colour(name: str) -> np.ndarray:
    """A fixed saturated colour per class name."""
    seed = sum((i + 1) * ord(c) for i, c in enumerate(name))
    rng = np.random.default_rng(seed)
    colour = rng.uniform(0, 1, 3)
    colour[rng.integers(0, 3)] = 1.0
    colour[rng.integers(0, 3)] *= 0.2
    return (colour * 255).astype(np.uint8)


def paint(picture: Picture, seed: int) -> np.ndarray:
    """uint8 RGB [H,W,3]: a smooth background with each box filled in its class colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0 : picture.height, 0 : picture.width].astype(np.float32)
    base = rng.uniform(60, 190, 3)
    image = base[None, None, :] + 40 * np.sin(xx / (7 + 5 * rng.uniform()))[..., None] * rng.uniform(-1, 1, 3)
    image += 30 * (yy / picture.height)[..., None]
    image += rng.normal(0, 4, image.shape)
    for name, x0, y0, x1, y1 in picture.boxes:
        image[int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = class_colour(name)
    return np.clip(image, 0, 255).astype(np.uint8)


def _jpeg_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def encode(picture: Picture, seed: int) -> bytes | None:
    """The file's bytes for ``picture.how``; None for a file that must not exist."""
    if picture.how == MISSING:
        return None
    if picture.how == NOT_IMAGE:
        return b"this file is named like an image but holds no image data\n" * 4
    image = Image.fromarray(paint(picture, seed))
    if picture.how == GRAY:
        return _jpeg_bytes(image.convert("L"))
    if picture.how == CMYK:
        return _jpeg_bytes(image.convert("CMYK"))
    if picture.how == PNG:
        buffer = io.BytesIO()
        image.save(buffer, "PNG")
        return buffer.getvalue()
    if picture.how == PNG16:  # the gray picture times 257 plus low bits that 8-bit rounding removes again
        gray = np.asarray(image.convert("L")).astype(np.uint16)
        yy, xx = np.mgrid[0 : picture.height, 0 : picture.width]
        buffer = io.BytesIO()
        Image.fromarray((gray * 257 + (7 * xx + 3 * yy) % 100).astype(np.uint16)).save(buffer, "PNG")
        return buffer.getvalue()
    data = _jpeg_bytes(image)
    return data[: len(data) * 3 // 5] if picture.how == TRUNCATED else data


class Writer:
    """Writes files under a root and remembers what it wrote, for the listing."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: list[FixtureFile] = []

    def bytes(self, relative: str, data: bytes, note: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.files.append(FixtureFile(path, note))
        return path

    def text(self, relative: str, text: str, note: str) -> Path:
        return self.bytes(relative, text.encode(), note)

    def fifo(self, relative: str, note: str) -> None:
        """A named pipe (not written where the platform has none)."""
        path = self.root / relative
        if not hasattr(os, "mkfifo"):
            self.files.append(FixtureFile(path, note + " — not written: no named pipes on this platform"))
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_fifo()):
            path.unlink()
        if not path.exists():
            os.mkfifo(path)
        self.files.append(FixtureFile(path, note))

    def picture(self, relative: str, picture: Picture, seed: int, note: str = "") -> None:
        data = encode(picture, seed)
        if data is None:
            self.files.append(FixtureFile(self.root / relative, NOTES[MISSING] + " — not written" + note))
            return
        self.bytes(relative, data, NOTES[picture.how] + note)


# -- ImageNet ---------------------------------------------------------------------------------------

# (number, wnid, how, width, height); numbers are spread over the class folders so that the
# file-name order differs from ImageFolder's folder-by-folder order.
IMAGENET_IMAGES = (
    (1, TENCH, GOOD, 64, 48),
    (2, TOILET_TISSUE, GRAY, 48, 64),
    (3, GOLDFISH, CMYK, 80, 60),
    (4, TENCH, PNG, 56, 56),
    (5, GOLDFISH, TRUNCATED, 64, 48),
    (6, TOILET_TISSUE, GOOD, 72, 48),
    (7, TENCH, NOT_IMAGE, 64, 48),
    (8, GOLDFISH, GOOD, 40, 60),
)
IMAGENET_MISSING = (9, TOILET_TISSUE)  # flat layout only: in the labels files, not on disk


def imagenet_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}"


def _imagenet_picture(number: int, wnid: str, how: str, width: int, height: int) -> Picture:
    box = (wnid, width * 0.25, height * 0.25, width * 0.75, height * 0.75)
    return Picture(imagenet_name(number), width, height, how, (box,))


def write_imagenet(w: Writer) -> None:
    for number, wnid, how, width, height in IMAGENET_IMAGES:
        picture = _imagenet_picture(number, wnid, how, width, height)
        w.picture(f"imagenet/val/{wnid}/{picture.name}.JPEG", picture, seed=number)
        w.picture(f"imagenet_flat/val/{picture.name}.JPEG", picture, seed=number)
    number, wnid = IMAGENET_MISSING
    w.picture(f"imagenet_flat/val/{imagenet_name(number)}.JPEG", _imagenet_picture(number, wnid, MISSING, 64, 48), seed=number)
    w.text(f"imagenet/val/{TENCH}/notes.txt", "not an image: ignored by the reader\n", "non-image file (ignored)")

    from .imagenet import read_class_list

    index = {wnid: i for i, wnid in enumerate(read_class_list())}
    entries = [(n, wnid, width, height) for n, wnid, _, width, height in IMAGENET_IMAGES]
    entries.append((IMAGENET_MISSING[0], IMAGENET_MISSING[1], 64, 48))
    # Kaggle's file is not sorted; neither is ours.
    csv_rows = ["ImageId,PredictionString"]
    for number, wnid, width, height in sorted(entries, key=lambda e: (e[0] * 5) % 11):
        csv_rows.append(f"{imagenet_name(number)},{wnid} {width // 4} {height // 4} {3 * width // 4} {3 * height // 4} ")
    w.text("imagenet_flat/LOC_val_solution.csv", "\n".join(csv_rows) + "\n", "Kaggle labels (unsorted, one missing image)")
    plain = [f"{imagenet_name(n)}.JPEG {index[wnid]}" for n, wnid, _, _ in entries]
    w.text("imagenet_flat/val_labels.txt", "\n".join(plain) + "\n", "plain '<file> <class index>' labels")



IMAGENET_SIZES = ((500, 375), (375, 500), (500, 333), (500, 400))  # the commonest ILSVRC-2012 validation sizes


def write_imagenet_val(root: str | Path, count: int, workers: int | None = None) -> Path:
    """``count`` ImageNet-size JPEGs in the class-folder layout, ``ILSVRC2012_val_00000001.JPEG`` on.

    Not a test fixture but a stand-in for the real validation set where it cannot be had (a
    machine without internet): same file names, layout, sizes and decoding work, so a throughput
    measurement (``jobs/imagenet_first1000.yaml``) exercises what it would on ImageNet. Classes
    cycle through the 1000 wnids; each image is a pure function of its number. Written by
    ``workers`` processes (all cores by default): painting one costs ~0.1 s.
    """
    from concurrent.futures import ProcessPoolExecutor

    from .imagenet import read_class_list

    if count < 1:
        raise ValueError(f"--imagenet-val needs a positive count, got {count}")
    folder = Path(root) / "imagenet_val"
    wnids = read_class_list()
    jobs = [(folder, number, wnids[(number - 1) % len(wnids)]) for number in range(1, count + 1)]
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        list(pool.map(_write_val_image, jobs, chunksize=16))
    return folder


def _write_val_image(job: tuple[Path, int, str]) -> None:
    folder, number, wnid = job
    width, height = IMAGENET_SIZES[number % len(IMAGENET_SIZES)]
    path = folder / "val" / wnid / f"{imagenet_name(number)}.JPEG"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(_imagenet_picture(number, wnid, GOOD, width, height), seed=number))

SPECIAL_IMAGES = ((21, TENCH, GOOD), (22, GOLDFISH, "fifo"), (23, TOILET_TISSUE, PNG16))


def write_imagenet_special(w: Writer) -> None:
    """Files that are not what their name says: a named pipe (reading it would block forever)
    and a 16-bit PNG; a flat ImageNet folder with Kaggle labels."""
    rows = ["ImageId,PredictionString"]
    for number, wnid, how in SPECIAL_IMAGES:
        name = imagenet_name(number)
        if how == "fifo":
            w.fifo(f"imagenet_special/val/{name}.JPEG", "named pipe with an image name (error row: not a regular file)")
        else:
            w.picture(f"imagenet_special/val/{name}.JPEG", _imagenet_picture(number, wnid, how, 56, 44), seed=number)
        rows.append(f"{name},{wnid} 14 11 42 33 ")
    w.text("imagenet_special/LOC_val_solution.csv", "\n".join(rows) + "\n", "Kaggle labels of the special files")


# -- COCO -------------------------------------------------------------------------------------------


def coco_categories() -> list[dict]:
    """The 80 COCO detection categories with their real ids (1..90 with gaps), from torchvision's metadata."""
    from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights

    names = FasterRCNN_ResNet50_FPN_Weights.DEFAULT.meta["categories"]
    return [{"id": i, "name": name, "supercategory": "thing"} for i, name in enumerate(names) if name not in ("__background__", "N/A")]


# (id, how, width, height, boxes [category, x, y, w, h] (COCO's xywh), crowd flags); json order unsorted.
COCO_VAL = (
    (632, GOOD, 80, 60, [("dog", 20, 10, 40, 40), ("person", 0, 0, 12, 60)], [False, False]),
    (139, GOOD, 64, 48, [("person", 16, 8, 32, 32), ("car", 0, 30, 14, 10), ("person", 40, 2, 20, 20)], [False, False, True]),
    (285, GRAY, 48, 64, [("cat", 8, 20, 32, 30)], [False]),
    (724, PNG, 64, 64, [("dog", 10, 10, 44, 44)], [False]),
    (776, TRUNCATED, 64, 48, [("car", 10, 10, 30, 20)], [False]),
    (785, MISSING, 64, 48, [("person", 10, 10, 30, 20)], [False]),
    (802, GOOD, 72, 56, [], []),
    (872, CMYK, 60, 80, [("dog", 5, 30, 50, 30), ("cat", 0, 0, 60, 12)], [False, False]),
)
COCO_TRAIN = tuple(
    (image_id, GOOD, width, height, boxes, [False] * len(boxes))
    for image_id, width, height, boxes in (
        (9, 64, 48, [("dog", 16, 8, 32, 32)]),
        (25, 48, 64, [("cat", 8, 16, 32, 32)]),
        (30, 64, 64, [("person", 12, 12, 40, 40), ("car", 2, 2, 10, 8)]),
        (34, 64, 48, [("car", 14, 10, 36, 28)]),
        (36, 56, 56, [("dog", 10, 10, 36, 36), ("cat", 30, 30, 20, 20)]),
        (42, 80, 60, [("person", 30, 10, 20, 40)]),
        (49, 60, 60, [("cat", 15, 15, 30, 30)]),
        (61, 64, 48, [("car", 20, 12, 24, 24), ("person", 0, 0, 8, 48)]),
    )
)


def coco_document(images: tuple, categories: list[dict]) -> dict:
    ids = {c["name"]: c["id"] for c in categories}
    document = {
        "info": {"description": "benchmark fixtures: COCO-format tiny split", "version": "1.0", "year": 2017},
        "licenses": [],
        "images": [],
        "annotations": [],
        "categories": categories,
    }
    annotation_id = 1000
    for image_id, _, width, height, boxes, crowd in images:
        document["images"].append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width, "height": height})
        for (name, x, y, bw, bh), is_crowd in zip(boxes, crowd):
            annotation_id += 1
            document["annotations"].append(
                {
                    "id": annotation_id,
                    "image_id": image_id,
                    "category_id": ids[name],
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": int(is_crowd),
                    "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]],
                }
            )
    return document


def _coco_picture(image_id: int, how: str, width: int, height: int, boxes: list) -> Picture:
    return Picture(f"{image_id:012d}", width, height, how, tuple((n, x, y, x + bw, y + bh) for n, x, y, bw, bh in boxes))


def write_coco(w: Writer) -> None:
    categories = coco_categories()
    for split, images in (("val", COCO_VAL), ("train", COCO_TRAIN)):
        document = coco_document(images, categories)
        w.text(f"coco/annotations/instances_{split}2017.json", json.dumps(document), f"COCO instances, {len(images)} images")
        for image_id, how, width, height, boxes, _ in images:
            picture = _coco_picture(image_id, how, width, height, boxes)
            w.picture(f"coco/{split}2017/{picture.name}.jpg", picture, seed=image_id, note="" if boxes else " — no annotations")


# -- VOC --------------------------------------------------------------------------------------------

# (id, how, width, height, objects [(class, xmin, ymin, xmax, ymax, difficult)]); 1-based inclusive pixels.
VOC_VAL = (
    ("2008_000008", GOOD, 64, 48, [("person", 5, 5, 20, 40, True), ("dog", 24, 10, 56, 42, False)]),
    ("2008_000002", GRAY, 48, 64, [("cat", 9, 17, 40, 56, False)]),
    ("2008_000003", CMYK, 80, 60, [("car", 21, 11, 60, 50, False), ("person", 1, 1, 10, 60, False)]),
    ("2008_000007", PNG, 56, 56, [("dog", 11, 11, 46, 46, False)]),
    ("2008_000009", TRUNCATED, 64, 48, [("car", 11, 11, 40, 30, False)]),
    ("2008_000015", MISSING, 64, 48, [("person", 11, 11, 40, 30, False)]),
    ("2008_000016", GOOD, 60, 60, []),
    ("2008_000019", GOOD, 72, 56, [("person", 30, 8, 50, 50, False), ("bicycle", 10, 30, 70, 56, False)]),
)
VOC_TRAIN = tuple(
    (image_id, GOOD, width, height, objects)
    for image_id, width, height, objects in (
        ("2008_000021", 64, 48, [("dog", 17, 9, 48, 40, False)]),
        ("2008_000023", 48, 64, [("cat", 9, 17, 40, 48, False)]),
        ("2008_000026", 64, 64, [("person", 13, 13, 52, 52, False), ("car", 3, 3, 12, 10, False)]),
        ("2008_000027", 64, 48, [("car", 15, 11, 50, 38, False)]),
        ("2008_000028", 56, 56, [("dog", 11, 11, 46, 46, False), ("cat", 31, 31, 50, 50, False)]),
        ("2008_000032", 80, 60, [("person", 31, 11, 50, 50, False)]),
        ("2008_000033", 60, 60, [("cat", 16, 16, 45, 45, False)]),
        ("2008_000034", 64, 48, [("bicycle", 21, 13, 44, 36, False), ("person", 1, 1, 8, 48, False)]),
    )
)


def voc_xml(image_id: str, width: int, height: int, objects: list) -> str:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    source = ET.SubElement(root, "source")
    ET.SubElement(source, "database").text = "benchmark fixtures"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    ET.SubElement(root, "segmented").text = "0"
    for name, xmin, ymin, xmax, ymax, difficult in objects:
        item = ET.SubElement(root, "object")
        ET.SubElement(item, "name").text = name
        ET.SubElement(item, "pose").text = "Unspecified"
        ET.SubElement(item, "truncated").text = "0"
        box = ET.SubElement(item, "bndbox")
        for tag, value in (("xmin", xmin), ("ymin", ymin), ("xmax", xmax), ("ymax", ymax)):
            ET.SubElement(box, tag).text = str(value)
        ET.SubElement(item, "difficult").text = "1" if difficult else "0"
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="unicode") + "\n"


def _voc_picture(image_id: str, how: str, width: int, height: int, objects: list) -> Picture:
    return Picture(image_id, width, height, how, tuple((n, x0 - 1, y0 - 1, x1, y1) for n, x0, y0, x1, y1, _ in objects))


def write_voc(w: Writer) -> None:
    base = "voc/VOC2012"
    for split, images in (("val", VOC_VAL), ("train", VOC_TRAIN)):
        # The split file keeps this (unsorted) order: the canonical order is the file's.
        w.text(f"{base}/ImageSets/Main/{split}.txt", "".join(f"{i[0]}\n" for i in images), f"VOC {split} split")
        for number, (image_id, how, width, height, objects) in enumerate(images):
            note = "VOC annotation" + ("" if objects else " — no objects")
            w.text(f"{base}/Annotations/{image_id}.xml", voc_xml(image_id, width, height, objects), note)
            w.picture(f"{base}/JPEGImages/{image_id}.jpg", _voc_picture(image_id, how, width, height, objects), seed=500 + number)


# -- malformed annotation and labels files ----------------------------------------------------------


def _without_comma_at(text: str, line: int) -> str:
    lines = text.splitlines()
    assert lines[line - 1].endswith(","), lines[line - 1]
    lines[line - 1] = lines[line - 1][:-1]
    return "\n".join(lines) + "\n"


def write_malformed(w: Writer) -> None:
    categories = coco_categories()
    base = coco_document(COCO_VAL[:3], categories)
    pretty = json.dumps(base, indent=1)
    # A missing comma after the first image's "file_name": the syntax error is reported one line below.
    line = next(i for i, text in enumerate(pretty.splitlines(), start=1) if '"file_name"' in text)
    w.text("malformed/coco_bad_json/annotations/instances_val2017.json", _without_comma_at(pretty, line),
           f"COCO json with a syntax error (missing comma at the end of line {line})")
    bad_category = json.loads(json.dumps(base))
    bad_category["annotations"][1]["category_id"] = 12  # a gap in COCO's ids: no such category
    w.text("malformed/coco_unknown_category/annotations/instances_val2017.json", json.dumps(bad_category),
           "COCO json: annotations[1].category_id names no category")
    bad_bbox = json.loads(json.dumps(base))
    bad_bbox["annotations"][2]["bbox"] = [1, 2, 3]
    w.text("malformed/coco_bad_bbox/annotations/instances_val2017.json", json.dumps(bad_bbox),
           "COCO json: annotations[2].bbox has 3 numbers")
    no_categories = {k: v for k, v in base.items() if k != "categories"}
    w.text("malformed/coco_no_categories/annotations/instances_val2017.json", json.dumps(no_categories),
           "COCO json without 'categories'")

    def voc_case(case: str, xml: dict[str, str], split: list[str], note: str) -> None:
        folder = f"malformed/{case}/VOC2012"
        w.text(f"{folder}/ImageSets/Main/val.txt", "".join(f"{i}\n" for i in split), "VOC val split")
        for image_id, text in xml.items():
            w.text(f"{folder}/Annotations/{image_id}.xml", text, note if image_id == split[-1] else "VOC annotation")

    good = voc_xml("2008_000002", 48, 64, [("cat", 9, 17, 40, 56, False)])
    unclosed = voc_xml("2008_000003", 64, 48, [("dog", 5, 5, 30, 30, False)]).replace("</bndbox>", "</bndbx>", 1)
    voc_case("voc_bad_xml", {"2008_000002": good, "2008_000003": unclosed}, ["2008_000002", "2008_000003"],
             "VOC xml with a mismatched tag")
    spaceship = voc_xml("2008_000003", 64, 48, [("dog", 5, 5, 30, 30, False), ("spaceship", 1, 1, 9, 9, False)])
    voc_case("voc_unknown_class", {"2008_000002": good, "2008_000003": spaceship}, ["2008_000002", "2008_000003"],
             "VOC xml: object 2 is a 'spaceship'")
    not_a_number = voc_xml("2008_000003", 64, 48, [("dog", 5, 5, 30, 30, False)]).replace("<xmax>30</xmax>", "<xmax>abc</xmax>")
    voc_case("voc_bad_box", {"2008_000002": good, "2008_000003": not_a_number}, ["2008_000002", "2008_000003"],
             "VOC xml: object 1 <xmax> is not a number")
    voc_case("voc_missing_xml", {"2008_000002": good}, ["2008_000002", "2008_000099"], "VOC split naming a missing xml")
    w.text("malformed/voc_missing_xml/VOC2012/Annotations/README.txt", "2008_000099.xml is missing on purpose\n",
           "VOC split file names 2008_000099, whose xml is missing")

    picture = _imagenet_picture(1, TENCH, GOOD, 64, 48)
    for case in ("imagenet_bad_csv", "imagenet_bad_labels"):
        w.picture(f"malformed/{case}/val/{picture.name}.JPEG", picture, seed=1)
    w.text(
        "malformed/imagenet_bad_csv/LOC_val_solution.csv",
        f"ImageId,PredictionString\n{imagenet_name(1)},{TENCH} 1 1 9 9 \n{imagenet_name(2)},n99999999 1 1 9 9 \n",
        "Kaggle labels: line 3 names wnid n99999999, not an ImageNet class",
    )
    w.text(
        "malformed/imagenet_bad_labels/val_labels.txt",
        f"{imagenet_name(1)}.JPEG 0\n{imagenet_name(2)}.JPEG 1000\n",
        "plain labels: line 2 has class index 1000 (of 0..999)",
    )
    w.text(
        "malformed/imagenet_bad_labels/val_labels_columns.txt",
        f"{imagenet_name(1)}.JPEG 0\n{imagenet_name(2)}.JPEG\n",
        "plain labels: line 2 has no label",
    )
    w.picture("malformed/imagenet_unknown_folder/val/n99999999/ILSVRC2012_val_00000001.JPEG", picture, seed=1,
              note=" in class folder n99999999, which is not an ImageNet wnid")


README = """\
benchmark fixtures: tiny datasets in the real on-disk formats (written by `benchmark fixtures`).

  imagenet/       ImageFolder layout: val/<wnid>/ILSVRC2012_val_*.JPEG (wnids of class 0, 1, 999)
  imagenet_flat/  flat val/*.JPEG + LOC_val_solution.csv (Kaggle) + val_labels.txt ('<file> <index>')
  coco/           annotations/instances_{{val,train}}2017.json + {{val,train}}2017/*.jpg (80 real categories)
  voc/VOC2012/    Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{{val,train}}.txt
  imagenet_special/  flat val/: a named pipe called *.JPEG and a 16-bit grayscale PNG, Kaggle labels
  malformed/      one broken annotation or labels file per folder: the job must fail before any work

The val splits hold the bad cases: truncated JPEG, bytes that are no image, PNG and CMYK files
behind JPEG names, grayscale JPEGs, images named by the annotations but missing, images without
boxes. Unreadable images become rows of the `errors` table; the rest of the shard goes on. A file
you may not read is reported as "permission denied" (not written here: root reads any file).
Copy this folder with care: imagenet_special/ holds a named pipe (`cp -r` copies it as a pipe).

Try:
  benchmark run jobs/smoke.yaml --out runs/fx-coco --set dataset.kind=coco --set dataset.root={root}/coco
  benchmark run jobs/smoke.yaml --out runs/fx-voc --set dataset.kind=voc --set dataset.root={root}/voc
  benchmark run jobs/smoke.yaml --out runs/fx-imagenet --set dataset.kind=imagenet --set dataset.root={root}/imagenet
  benchmark finetune --dataset coco --root {root}/coco --model resnet34 --weights random --crop 32 \\
      --epochs 1 --batch-size 4 --out runs/fx-finetune
"""

WRITERS: tuple[Callable[[Writer], None], ...] = (
    write_imagenet, write_imagenet_special, write_coco, write_voc, write_malformed,
)


def write_fixtures(root: str | Path) -> list[FixtureFile]:
    """Write every fixture dataset under ``root`` (created if needed); returns what was written."""
    w = Writer(Path(root))
    w.root.mkdir(parents=True, exist_ok=True)
    for write in WRITERS:
        write(w)
    w.text("README.txt", README.format(root=w.root), "what is here")
    return w.files

