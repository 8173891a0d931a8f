"""Attribution maps an experiment chooses to keep, as rows of the ``maps`` table (float16).

One row per image × method × seed × stage × component: the reduced 2-D map, optionally
area-averaged to ``map_size`` × ``map_size``, row-major in ``values`` with its ``height`` and
``width``. ``seed`` is null for the trained model (stage 0). Used by the figures of paper §4.1
(Fig. 4: the kept layer's and the output's explanations) and §4.2 (Fig. 7: skip and residual parts).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from torch.nn import functional as F

from .grid import axis_column, grid_index, list_column


class MapRows:
    """Collects maps of one batch; ``table`` turns them into rows (None when nothing was kept)."""

    def __init__(self, experiment: str, map_size: int | None) -> None:
        self.experiment, self.map_size = experiment, map_size
        self._pieces: list[tuple[Tensor, str, int | None, int, str]] = []

    def add(self, maps: Tensor, method: str, seed: int | None, stage: int, component: str) -> None:
        """Keep ``maps`` [N, H, W] (moved to the host as float16 at once, so the device holds nothing)."""
        if self.map_size is not None:
            maps = F.adaptive_avg_pool2d(maps.unsqueeze(1).float(), self.map_size).squeeze(1)
        self._pieces.append((maps.detach().to("cpu", torch.float16), method, seed, stage, component))

    def table(self, image_ids: list[str], shard: int) -> pa.Table | None:
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return None
        stacked = torch.cat([maps for maps, *_ in pieces]).numpy()  # [pieces * images, H, W]
        count, height, width = stacked.shape
        rows, images = grid_index((len(pieces), len(image_ids)))
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "experiment": pa.array(np.full(count, self.experiment, dtype=object), pa.string()),
                "method": axis_column([p[1] for p in pieces], rows, pa.string()),
                "seed": axis_column([p[2] for p in pieces], rows, pa.int32()),
                "stage": axis_column([p[3] for p in pieces], rows, pa.int32()),
                "component": axis_column([p[4] for p in pieces], rows, pa.string()),
                "height": pa.array(np.full(count, height, dtype=np.int32)),
                "width": pa.array(np.full(count, width, dtype=np.int32)),
                "values": list_column(stacked.reshape(count, height * width), pa.float16()),
                "shard": pa.array(np.full(count, shard, dtype=np.int32)),
            }
        )
