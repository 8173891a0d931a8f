"""Datasets in one canonical order, decoding, preprocessing (DESIGN §8)."""

from .base import AnnotationError, ImageDataset, ImageError, ImageRecord
from .boxes import BoxAnnotation, crop_targets
from .loader import ImageBatch, LoadError, load_images, prefetch_batches
from .preprocess import Geometry, Preprocess
from .registry import DATASETS, build_dataset, dataset_from_spec, select_records, slice_records

__all__ = [
    "AnnotationError", "BoxAnnotation", "DATASETS", "Geometry", "ImageBatch", "ImageDataset", "ImageError",
    "ImageRecord", "LoadError", "Preprocess", "build_dataset", "crop_targets", "dataset_from_spec", "load_images",
    "prefetch_batches", "select_records", "slice_records",
]
