"""Decoding image files with PIL, by content, the way torchvision's ImageFolder loader does.

``Image.open`` identifies a file by its bytes, not its name: a PNG behind a ``.JPEG`` name
decodes as PNG, CMYK JPEGs are converted to RGB, grayscale and palette images are expanded.
EXIF orientation is not applied (neither does the standard ImageNet evaluation transform).

Truncated files are *errors*: PIL's ``ImageFile.LOAD_TRUNCATED_IMAGES`` stays off, so a file
cut short raises instead of being padded with grey, and the image becomes a row of the
``errors`` table rather than silently altered pixels.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from .base import ImageDataset, ImageError, ImageRecord

# Extensions torchvision's ImageFolder accepts (compared lower-case).
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def read_rgb(path: str | Path) -> np.ndarray:
    """The file's pixels as uint8 RGB [H,W,3]; ``ImageError`` with the file and the reason otherwise."""
    path = Path(path)
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        # Something in this process switched PIL to padding truncated files; we refuse to.
        raise ImageError(f"{path}: PIL.ImageFile.LOAD_TRUNCATED_IMAGES is on; truncated files would decode silently")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                detected = image.format or "unknown format"
                mode = image.mode
                rgb = image.convert("RGB")
    except FileNotFoundError:
        raise ImageError(f"{path}: file not found") from None
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

    def decode(self, record: ImageRecord) -> np.ndarray:
        return read_rgb(record.source)


def is_image_file(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def resolve(root: Path, value: str | None, default: Path) -> Path:
    """A path from the spec: absolute as given, relative to the dataset root, or the default."""
    if value is None:
        return default
    path = Path(value).expanduser()
    return path if path.is_absolute() else root / path
