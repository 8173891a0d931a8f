"""ImageNet validation images in their two usual on-disk layouts (DESIGN §8).

* Class folders (torchvision ImageFolder): ``<root>/val/<wnid>/ILSVRC2012_val_00000001.JPEG``.
* A flat folder of images plus a labels file: Kaggle's ``LOC_val_solution.csv``
  (``ImageId,PredictionString`` whose first token is the wnid) or a text file of
  ``<file name> <class index or wnid>`` lines (Caffe's ``val.txt``).

Canonical order: sorted by file name, in both layouts (class folders are merged, not walked
one after the other as ImageFolder does), so the paper's "first 1000 images" are
``ILSVRC2012_val_00000001`` … ``ILSVRC2012_val_00001000`` and its "4000 additional" ones are
``offset: 1000, limit: 4000``. In the flat layout the labels file is the index: an entry whose
image is missing keeps its place and becomes an error row, so shards never shift.

Class index: position of the wnid in the class list, by default the standard 1000 ILSVRC-2012
wnids in sorted order (``imagenet_wnids.txt``: the order of torchvision's and Keras' pretrained
heads and of Kaggle's ``LOC_synset_mapping.txt``). Class folders none of which is a WordNet id
(``0/ … 9/``, ``cat/ dog/``: someone's own ImageFolder data) follow torchvision's ``ImageFolder``
instead: the classes are the sorted folder names. As soon as one folder looks like a wnid
(``n`` and 8 digits), the layout is ImageNet's, and a folder that is not in the class list is an
error (a mistyped wnid folder would otherwise shift every class index).
"""

from __future__ import annotations

import csv
import os
import re
from pathlib import Path
from typing import Any

from .base import AnnotationError, ImageRecord
from .images import ImageFiles, is_image_file, resolve

WNIDS_FILE = Path(__file__).with_name("imagenet_wnids.txt")
KAGGLE_LABELS = "LOC_val_solution.csv"
DEFAULT_EXTENSION = ".JPEG"
WNID = re.compile(r"n\d{8}")


def read_class_list(path: str | Path | None = None) -> list[str]:
    """Wnids in class-index order: the first token of every non-empty line (``#`` starts a comment)."""
    path = Path(path) if path is not None else WNIDS_FILE
    try:
        text = path.read_text()
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read the class list ({error.strerror or error})") from None
    classes: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        wnid = line.split()[0]
        if wnid in seen:
            raise AnnotationError(f"{path}:{number}: class '{wnid}' already listed at line {seen[wnid]}")
        seen[wnid] = number
        classes.append(wnid)
    if not classes:
        raise AnnotationError(f"{path}: the class list is empty")
    return classes


def read_labels_file(path: Path, classes: list[str]) -> dict[str, int]:
    """File name -> class index from a Kaggle CSV or a ``<file name> <label>`` text file."""
    index = {wnid: i for i, wnid in enumerate(classes)}
    try:
        if path.suffix.lower() == ".csv":
            return _read_kaggle_csv(path, index)
        return _read_plain_labels(path, index)
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read the labels file ({error.strerror or error})") from None
    except UnicodeDecodeError as error:
        raise AnnotationError(f"{path}: not a text file ({error})") from None


def _with_extension(name: str) -> str:
    return name if is_image_file(name) else name + DEFAULT_EXTENSION


def _add(labels: dict[str, int], lines: dict[str, int], name: str, label: int, where: str, number: int) -> None:
    if name in labels:
        raise AnnotationError(f"{where}: '{name}' is already labelled at line {lines[name]}")
    labels[name], lines[name] = label, number


def _read_kaggle_csv(path: Path, index: dict[str, int]) -> dict[str, int]:
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [cell.strip() for cell in header] != ["ImageId", "PredictionString"]:
            raise AnnotationError(f"{path}:1: expected the header 'ImageId,PredictionString', got {header!r}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != 2 or not row[0].strip():
                raise AnnotationError(f"{where}: expected 'ImageId,PredictionString', got {row!r}")
            tokens = row[1].split()
            if not tokens or len(tokens) % 5:
                raise AnnotationError(
                    f"{where}: PredictionString must be groups of 'wnid x_min y_min x_max y_max', got {row[1]!r}"
                )
            wnids = set(tokens[::5])
            if len(wnids) != 1:
                raise AnnotationError(f"{where}: boxes of several classes {sorted(wnids)}; a single label is needed")
            wnid = tokens[0]
            if wnid not in index:
                raise AnnotationError(f"{where}: '{wnid}' is not a class of the class list")
            _add(labels, lines, _with_extension(row[0].strip()), index[wnid], where, reader.line_num)
    return labels


def _read_plain_labels(path: Path, index: dict[str, int]) -> dict[str, int]:
    labels: dict[str, int] = {}
    lines: dict[str, int] = {}
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        where = f"{path}:{number}"
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise AnnotationError(f"{where}: expected '<file name> <class index or wnid>', got {raw!r}")
        name, label = parts
        if label.lstrip("-").isdigit():
            value = int(label)
            if not 0 <= value < len(index):
                raise AnnotationError(f"{where}: class index {value} is outside 0..{len(index) - 1}")
        elif label in index:
            value = index[label]
        else:
            raise AnnotationError(f"{where}: label '{label}' is neither a class index nor a wnid of the class list")
        _add(labels, lines, _with_extension(name), value, where, number)
    return labels


def _subfolders(folder: Path) -> list[str]:
    with os.scandir(folder) as scan:
        return sorted(e.name for e in scan if e.is_dir() and not e.name.startswith("."))


class ImageNetVal(ImageFiles):
    kind = "imagenet"

    def __init__(
        self,
        root: str | Path,
        split: str = "val",
        images_dir: str | None = None,
        labels_file: str | None = None,
        class_list: str | None = None,
        num_classes: int = 1000,
    ) -> None:
        self.root = Path(root).expanduser()
        self.split = split
        self.images_dir, self.labels_file, self.class_list = images_dir, labels_file, class_list
        self.num_classes = num_classes
        self._classes: list[str] | None = None
        self._layout: dict[str, Any] = {}

    # -- where things are -------------------------------------------------------------------------
    def folder(self) -> Path:
        """The image folder: dataset.images_dir, else <root>/<split>, Kaggle's ILSVRC/Data/CLS-LOC/<split>, root."""
        if self.images_dir is not None:
            folder = resolve(self.root, self.images_dir, self.root)
            if not folder.is_dir():
                raise FileNotFoundError(f"dataset.images_dir: {folder} is not a folder")
            return folder
        for candidate in (self.root / self.split, self.root / "ILSVRC" / "Data" / "CLS-LOC" / self.split, self.root):
            if candidate.is_dir():
                return candidate
        raise FileNotFoundError(f"dataset.root: {self.root} is not a folder")

    def classes(self) -> list[str]:
        if self._classes is None:
            folders = self._image_folder_classes()
            if folders is not None:
                self._classes = folders
                return folders
            path = resolve(self.root, self.class_list, WNIDS_FILE)
            classes = read_class_list(path)
            if len(classes) != self.num_classes:
                raise AnnotationError(
                    f"{path}: {len(classes)} classes, but the model has {self.num_classes} outputs; "
                    "set dataset.class_list and model.num_classes consistently"
                )
            self._classes = classes
        return self._classes

    def _image_folder_classes(self) -> list[str] | None:
        """torchvision's ImageFolder classes (sorted folder names) when no class folder is a
        WordNet id and no class list or labels file is given; None otherwise."""
        if self.class_list is not None or self.labels_file is not None:
            return None
        folder = self.folder()
        folders = _subfolders(folder)
        if not folders or any(WNID.fullmatch(name) for name in folders):
            return None  # ImageNet's layout (a folder that is no class of the list is named by index())
        if len(folders) != self.num_classes:
            shown = ", ".join(f"{i} = '{name}'" for i, name in enumerate(folders[:4])) + (" …" if len(folders) > 4 else "")
            raise AnnotationError(
                f"{folder}: the class folders are not ImageNet wnids, so, as torchvision's ImageFolder does, their "
                f"sorted names are the classes ({shown}): {len(folders)} classes, but the model has "
                f"{self.num_classes} outputs; set model.num_classes: {len(folders)} (with model.weights a state dict "
                "of such a head), or name the folders by wnid, or set dataset.class_list"
            )
        self._layout["classes_from"] = "class folder names, sorted (torchvision ImageFolder)"
        return folders

    def labels_path(self, folder: Path) -> Path | None:
        """The flat layout's labels file: dataset.labels_file, else a LOC_val_solution.csv nearby."""
        if self.labels_file is not None:
            path = resolve(self.root, self.labels_file, self.root)
            if not path.is_file():
                raise FileNotFoundError(f"dataset.labels_file: {path} does not exist")
            return path
        for candidate in (folder / KAGGLE_LABELS, self.root / KAGGLE_LABELS, folder.parent / KAGGLE_LABELS):
            if candidate.is_file():
                return candidate
        return None

    # -- the index --------------------------------------------------------------------------------
    def index(self) -> list[ImageRecord]:
        folder = self.folder()
        classes = self.classes()
        subfolders = [] if self.labels_file is not None else _subfolders(folder)
        if subfolders:
            self._layout = {"layout": "class folders", "folder": str(folder), **self._layout}
            entries = self._class_folder_entries(folder, subfolders, classes)
        else:
            labels_path = self.labels_path(folder)
            if labels_path is None:
                raise AnnotationError(
                    f"{folder}: neither class folders (<split>/<wnid>/*.JPEG) nor a labels file "
                    f"({KAGGLE_LABELS}); set dataset.labels_file"
                )
            self._layout = {"layout": "flat", "folder": str(folder), "labels_file": str(labels_path)}
            labels = read_labels_file(labels_path, classes)
            entries = [(name, folder / name, label) for name, label in labels.items()]
        entries.sort(key=lambda entry: (Path(entry[0]).name, entry[0]))
        records: list[ImageRecord] = []
        owners: dict[str, Path] = {}
        for name, path, label in entries:
            image_id = Path(name).stem
            if image_id in owners:
                raise AnnotationError(f"{path}: image id '{image_id}' is also the id of {owners[image_id]}")
            owners[image_id] = path
            records.append(ImageRecord(image_id=image_id, source=str(path), label=label))
        return records

    def _class_folder_entries(self, folder: Path, subfolders: list[str], classes: list[str]) -> list[tuple[str, Path, int]]:
        index = {wnid: i for i, wnid in enumerate(classes)}
        entries = []
        for wnid in subfolders:
            if wnid not in index:
                raise AnnotationError(f"{folder / wnid}: folder name '{wnid}' is not a class of the class list")
            with os.scandir(folder / wnid) as scan:
                names = [e.name for e in scan if is_image_file(e.name) and not e.is_dir()]
            entries.extend((f"{wnid}/{name}", folder / wnid / name, index[wnid]) for name in names)
        return entries

    def class_names(self) -> list[str]:
        return self.classes()

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "root": str(self.root), "split": self.split, "classes": self.num_classes, **self._layout}
