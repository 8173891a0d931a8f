"""Turning a results tensor with named axes into Arrow columns, without a per-row Python loop.

Experiments keep results as dense tensors (e.g. values[seed, stage, method, key, image]) on
the device and move them to the host once. Each axis has a short Arrow array of labels; the
column of a flattened tensor is that array ``take``n at the axis index of every element.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pyarrow as pa


def grid_index(shape: Sequence[int]) -> list[np.ndarray]:
    """For each axis, the index of every element of a C-order flattened array of ``shape``."""
    return [axis.ravel() for axis in np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")]


def axis_column(labels: pa.Array | Sequence, index: np.ndarray, type: pa.DataType | None = None) -> pa.Array:
    """The labels of one axis repeated for every element (``index`` from ``grid_index``)."""
    array = labels if isinstance(labels, pa.Array) else pa.array(list(labels), type=type)
    return array.take(pa.array(index, type=pa.int64()))


def list_column(values: np.ndarray, type: pa.DataType = pa.float32()) -> pa.Array:
    """A [rows, length] numpy array as an Arrow list column."""
    rows, length = values.shape
    flat = pa.array(np.ascontiguousarray(values, dtype=type.to_pandas_dtype()).ravel(), type=type)
    offsets = pa.array(np.arange(0, (rows + 1) * length, length, dtype=np.int32), type=pa.int32())
    return pa.ListArray.from_arrays(offsets, flat)
