"""Rows of the ``maps`` table: the input and every map of the first ``runtime.save_maps`` images.

The heatmap grids of the paper (Fig. 4, Fig. 7) need the maps themselves, not only the
metrics; they are saved for a few images only, in the float16 format of
``benchmark.results.maps``. Stage 0 is the trained model (seed null), the input image has
kind ``input``.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from ..results.maps import encode_arrays
from .grid import axis_column, grid_index


def maps_table(
    image_ids: list[str],
    pixels: np.ndarray,
    reference: np.ndarray,
    reference_targets: np.ndarray,
    stage_maps: np.ndarray | None,
    stage_targets: np.ndarray | None,
    methods: list,
    seeds: list[int],
    stages: list[int],
    mode: str,
    shard: int,
) -> pa.Table:
    """``pixels[k,3,H,W]``, ``reference[method,k,H,W]`` with ``reference_targets[k]``;
    ``stage_maps[seed,stage,method,k,H,W]`` with ``stage_targets[seed,stage,k]`` (None when the
    randomization check is off). ``image_ids`` are the k kept images."""
    pieces = [_rows(image_ids, "input", pixels, [None], None, [None], [0], mode, shard)]
    pieces.append(_rows(image_ids, "map", reference[None, None], methods, reference_targets[None, None],
                        [None], [0], mode, shard))
    if stage_maps is not None:
        pieces.append(_rows(image_ids, "map", stage_maps, methods, stage_targets, seeds, stages, mode, shard))
    return pa.concat_tables(pieces)


def _rows(
    image_ids: list[str], kind: str, arrays: np.ndarray, methods: list, targets: np.ndarray | None,
    seeds: list, stages: list[int], mode: str, shard: int,
) -> pa.Table:
    if kind == "input":  # arrays[k,3,H,W]: one row per image
        arrays = arrays[None, None, None]
    seed_axis, stage_axis, method_axis, image_axis = grid_index(arrays.shape[:4])
    count = image_axis.size
    shape, values, scale = encode_arrays(arrays.reshape(count, *arrays.shape[4:]))
    if targets is None:
        target = pa.nulls(count, pa.int32())
    else:  # targets[seed, stage, k]
        target = pa.array(np.asarray(targets)[seed_axis, stage_axis, image_axis].astype(np.int32))
    return pa.table(
        {
            "image_id": axis_column(image_ids, image_axis, pa.string()),
            "experiment": pa.array(["randomization"] * count, pa.string()),
            "kind": pa.array([kind] * count, pa.string()),
            "method": axis_column([getattr(m, "id", None) for m in methods], method_axis, pa.string()),
            "reduction": axis_column([getattr(m, "reduction", None) for m in methods], method_axis, pa.string()),
            "seed": axis_column(seeds, seed_axis, pa.int32()),
            "mode": pa.array([mode] * count, pa.string()),
            "stage": axis_column(stages, stage_axis, pa.int32()),
            "component": pa.nulls(count, pa.string()),
            "target": target,
            "shape": shape,
            "values": values,
            "scale": scale,
            "shard": pa.array(np.full(count, shard, dtype=np.int32)),
        }
    )
