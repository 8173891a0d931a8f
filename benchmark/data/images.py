"""Decoding image files with PIL, by content, the way torchvision's ImageFolder loader does.

``Image.open`` identifies a file by its bytes, not its name: a PNG behind a ``.JPEG`` name
decodes as PNG, CMYK JPEGs are converted to RGB, grayscale and palette images are expanded.
EXIF orientation is not applied (neither does the standard ImageNet evaluation transform).

Truncated files are *errors*: PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off, so a file
cut short raises instead of being padded with grey, and the image becomes a row of the
``errors`` table rather than silently altered pixels.

Only regular files are read (a named pipe called ``x.JPEG`` would block ``open`` forever), and a
read that does not return within ``read_timeout`` seconds (a hung network mount) is abandoned:
the image becomes an error row and the shard goes on. The reason is the system's own
("permission denied"), never a guess. 16-bit grayscale pixels are scaled to 8 bits (PIL's own
conversion clips them, which turns almost every pixel white).
"""

from __future__ import annotations

import io
import os
import stat
import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .base import ImageDataset, ImageError, ImageRecord

# Extensions torchvision's ImageFolder accepts (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
READ_TIMEOUT = 60.0  # seconds; dataset.read_timeout
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # PIL's 16-bit (and 32-bit integer) grayscale

_FILE_KINDS = (
    (stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
)


def _system_reason(error: OSError) -> str:
    if isinstance(error, FileNotFoundError):
        return "file not found"
    if isinstance(error, PermissionError):
        return f"permission denied ({error.strerror or error})"
    return f"cannot read the file: {error.strerror or error}"


def read_file(path: str | Path, timeout: float = READ_TIMEOUT, regular_only: bool = True) -> bytes:
    """The file's bytes; ``ImageError`` naming the file and the system's reason otherwise.

    The read runs in a thread of its own: if it has not returned after ``timeout`` seconds the
    image is given up (the thread stays blocked in the kernel; a daemon, it does not keep the
    process alive)."""
    path = Path(path)
    if regular_only:
        try:
            mode = os.stat(path).st_mode
        except OSError as error:
            raise ImageError(f"{path}: {_system_reason(error)}") from None
        if not stat.S_ISREG(mode):
            kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a plain file")
            raise ImageError(f"{path}: not a regular file ({kind}); only regular files are read as images")
    box: dict[str, bytes | OSError] = {}

    def read() -> None:
        try:
            box["data"] = path.read_bytes()
        except OSError as error:
            box["error"] = error

    reader = threading.Thread(target=read, name=f"read {path.name}", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise ImageError(f"{path}: reading did not finish within {timeout:g} s (dataset.read_timeout); skipped")
    if "error" in box:
        raise ImageError(f"{path}: {_system_reason(box['error'])}") from None  # type: ignore[arg-type]
    return box["data"]  # type: ignore[return-value]


def to_rgb(image: Image.Image, path: Path) -> Image.Image:
    """RGB, with 16-bit grayscale scaled to 8 bits (v / 257, so 65535 is 255) instead of clipped."""
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(
                f"{path}: {image.mode} pixels outside 0..65535 ({values.min()}..{values.max()}): no 8-bit scale is defined"
            )
        return Image.fromarray(np.round(values / 257.0).astype(np.uint8), mode="L").convert("RGB")
    if image.mode == "F":
        raise ImageError(f"{path}: floating-point pixels (mode F): no 8-bit scale is defined")
    return image.convert("RGB")


def read_rgb(path: str | Path, timeout: float = READ_TIMEOUT) -> np.ndarray:
    """The file's pixels as uint8 RGB [H,W,3]; ``ImageError`` with the file and the reason otherwise."""
    path = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Something in this process switched PIL to padding truncated files; we refuse to.
        raise ImageError(f"{path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated files would decode silently")
    data = read_file(path, timeout)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image.load()
                detected = image.format or "unknown format"
                mode = image.mode
                rgb = to_rgb(image, path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not a readable image (unknown or corrupt format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(f"{path}: refused, too many pixels ({error})") from None
    except OSError as error:
        # PIL's messages: "image file is truncated (N bytes not processed)", "broken data stream", ...
        raise ImageError(f"{path}: corrupt or truncated image: {error}") from None
    except (ValueError, SyntaxError) as error:  # PIL raises these for some malformed headers
        raise ImageError(f"{path}: corrupt image: {error}") from None
    array = np.array(rgb, dtype=np.uint8)  # a writable copy (np.asarray of a PIL image is read-only)
    if array.ndim != 3 or array.shape[2] != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise ImageError(f"{path}: decoded to an unusable array of shape {array.shape} ({detected}, mode {mode})")
    return array


class ImageFiles(ImageDataset):
    """A dataset whose records name image files (``record.source`` is the path)."""

    read_timeout: float = READ_TIMEOUT  # set from dataset.read_timeout by ``dataset_from_spec``

    def decode(self, record: ImageRecord) -> np.ndarray:
        return read_rgb(record.source, self.read_timeout)


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def resolve(root: Path, value: str | None, default: Path) -> Path:
    """A path from the spec: absolute as given, relative to the dataset root, or the default."""
    if value is None:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path
