"""What makes a dataset *the same dataset*: its canonical image list, not the folder it lives in.

A run records, per shard, a digest of its images: id, label, boxes (COCO/VOC) and the file's
size in bytes (content hashes would read every image on every resume; a re-encoded, cropped or
replaced file changes its size in practice). A resume compares the digests of the shards again:
a dataset copied or re-mounted elsewhere (only ``dataset.root`` changed) gives the same digests
and resumes; an image added, removed, relabelled or replaced changes its shard's digest and the
resume is refused, naming the shard.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from typing import Any, Iterable

import numpy as np

from .base import ImageRecord

BASIS = "image id, label, annotation (boxes), file size in bytes"


def file_size(source: str) -> int | None:
    """Bytes of the file a record names; None when it names no file (synthetic, bundled samples) or
    the file is missing (then it is missing wherever the dataset is mounted)."""
    try:
        return os.stat(source).st_size
    except OSError:
        return None


def _annotation_bytes(annotation: Any) -> bytes:
    if annotation is None:
        return b"-"
    if dataclasses.is_dataclass(annotation):
        parts = []
        for item in dataclasses.fields(annotation):
            value = np.asarray(getattr(annotation, item.name))
            parts.append(f"{item.name}:{value.dtype.str}:{value.shape}:".encode() + value.tobytes())
        return b"|".join(parts)
    return repr(annotation).encode()


def record_line(record: ImageRecord) -> bytes:
    size = file_size(record.source)
    label = "-" if record.label is None else str(record.label)
    head = f"{record.image_id}\t{label}\t{'-' if size is None else size}\t".encode()
    return head + _annotation_bytes(record.annotation) + b"\n"


def images_digest(records: Iterable[ImageRecord]) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(record_line(record))
    return digest.hexdigest()[:16]
