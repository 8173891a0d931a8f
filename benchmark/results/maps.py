"""The ``maps`` table's array format: float16 bytes of array / max|array| plus that scale.

Saved heatmaps (``runtime.save_maps``) are meant for figures, so float16 is plenty, but raw
attribution values span many orders of magnitude (tiny gradients, LRP maps summing to a logit):
dividing each array by its own largest magnitude keeps float16's relative precision everywhere
and rules out overflow. This module is the one place that encodes and decodes that format.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

DTYPE = np.dtype("<f2")


def encode_arrays(arrays: np.ndarray) -> tuple[pa.Array, pa.Array, pa.Array]:
    """``arrays[k, *shape]`` -> the ``shape``, ``values`` and ``scale`` columns of k rows."""
    arrays = np.asarray(arrays, dtype=np.float32)
    count, shape = arrays.shape[0], list(arrays.shape[1:])
    flat = arrays.reshape(count, -1)
    scale = np.abs(flat).max(axis=1, initial=0.0) if flat.size else np.zeros(count, np.float32)
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0).astype(np.float32)
    scaled = (flat / scale[:, None]).astype(DTYPE)
    return (
        pa.array([shape] * count, pa.list_(pa.int32())),
        pa.array([row.tobytes() for row in scaled], pa.binary()),
        pa.array(scale, pa.float32()),
    )


def decode_map(values: bytes, shape: list[int], scale: float) -> np.ndarray:
    """One stored array back as float32 in its original units."""
    return np.frombuffer(values, DTYPE).astype(np.float32).reshape(shape) * np.float32(scale)
