"""Attribution maps an experiment chooses to keep, as rows of the ``maps`` table.

One row per image × method × seed × stage × component: the reduced 2-D map, optionally
area-averaged to ``map_size`` × ``map_size``, stored in the table's scaled-float16 format
(``benchmark.results.maps``). ``seed`` is null for the trained model (stage 0). Used by the figures
of paper §4.1 (Fig. 4: the kept layer's and the output's explanations) and §4.2 (Fig. 7: skip
and residual parts); the randomization check's own saved maps share the table
(``experiment = 'randomization'``).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from torch.nn import functional as F

from ..results.maps import encode_arrays
from .grid import axis_column, grid_index


class MapRows:
    """Collects maps of one batch; ``table`` turns them into rows (None when nothing was kept)."""

    def __init__(self, experiment: str, map_size: int | None, mode: str) -> None:
        self.experiment, self.map_size, self.mode = experiment, map_size, mode
        self._pieces: list[tuple[Tensor, object, int | None, int, str]] = []

    def add(self, maps: Tensor, method, seed: int | None, stage: int, component: str) -> None:
        """Keep ``maps`` [N, H, W] of ``method`` (moved to the host at once, so the device holds nothing)."""
        if self.map_size is not None:
            maps = F.adaptive_avg_pool2d(maps.unsqueeze(1).float(), self.map_size).squeeze(1)
        self._pieces.append((maps.detach().to("cpu", torch.float32), method, seed, stage, component))

    def clear(self) -> None:
        """Forget what was kept (a new batch)."""
        self._pieces = []

    def table(self, image_ids: list[str]) -> pa.Table | None:
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return None
        stacked = torch.cat([maps for maps, *_ in pieces]).numpy()  # [pieces * images, H, W]
        count = stacked.shape[0]
        rows, images = grid_index((len(pieces), len(image_ids)))
        shape, values, scale = encode_arrays(stacked)
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "experiment": pa.array(np.full(count, self.experiment, dtype=object), pa.string()),
                "kind": pa.array(np.full(count, "map", dtype=object), pa.string()),
                "method": axis_column([p[1].id for p in pieces], rows, pa.string()),
                "reduction": axis_column([p[1].reduction for p in pieces], rows, pa.string()),
                "seed": axis_column([p[2] for p in pieces], rows, pa.int32()),
                "mode": pa.array(np.full(count, self.mode, dtype=object), pa.string()),
                "stage": axis_column([p[3] for p in pieces], rows, pa.int32()),
                "component": axis_column([p[4] for p in pieces], rows, pa.string()),
                "target": pa.nulls(count, pa.int32()),
                "shape": shape,
                "values": values,
                "scale": scale,
            }
        )
