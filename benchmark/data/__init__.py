"""Datasets in one canonical order, decoding, preprocessing (DESIGN §8)."""

from .base import AnnotationError, ImageDataset, ImageError, ImageRecord
from .loader import ImageBatch, LoadError, load_images
from .preprocess import Geometry, Preprocess
from .registry import DATASETS, build_dataset, select_records

__all__ = [
    "AnnotationError", "DATASETS", "Geometry", "ImageBatch", "ImageDataset", "ImageError", "ImageRecord",
    "LoadError", "Preprocess", "build_dataset", "load_images", "select_records",
]
