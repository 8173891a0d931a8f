"""Fine-tuning the COCO and VOC multi-label classifiers of supplement A.3 on Ray Train."""

from .metrics import average_precision, mean_average_precision
from .spec import FinetuneSpec

__all__ = ["FinetuneSpec", "average_precision", "mean_average_precision"]
