"""Attribution maps an experiment chooses to keep, as rows of the ``maps`` table.

One row per image × method × seed × stage × component: the reduced 2-D map, optionally
area-averaged to ``map_size`` × ``map_size``, stored in the table's scaled-float16 format
(``benchmark.results.maps``), with the class it explains. ``seed`` is null for the trained model
(stage 0). The input image is kept too (kind ``input``, at the same size), so the figures can show
what was explained. Used by the figures of paper §4.1 (Fig. 4: the kept layer's and the output's
explanations) and §4.2 (Fig. 7: skip and residual parts); the randomization check's own saved maps
share the table (``experiment = 'randomization'``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from torch.nn import functional as F

from ..results.maps import encode_arrays
from .grid import axis_column, grid_index


@dataclass
class _Piece:
    arrays: Tensor  # [N, H, W] maps or [N, 3, H, W] input pixels, on the host
    kind: str
    method: object | None
    seed: int | None
    stage: int
    component: str | None
    targets: np.ndarray | None  # [N]


class MapRows:
    """Collects maps of one batch; ``table`` turns them into rows (None when nothing was kept)."""

    def __init__(self, experiment: str, map_size: int | None, mode: str) -> None:
        self.experiment, self.map_size, self.mode = experiment, map_size, mode
        self._pieces: list[_Piece] = []

    def _sized(self, arrays: Tensor) -> Tensor:
        if self.map_size is not None:
            arrays = F.adaptive_avg_pool2d(arrays.float(), self.map_size)
        return arrays.detach().to("cpu", torch.float32)

    def add(self, maps: Tensor, method, seed: int | None, stage: int, component: str,
            targets: Tensor | None = None) -> None:
        """Keep ``maps`` [N, H, W] of ``method`` explaining ``targets`` [N] (moved to the host at once,
        so the device holds nothing)."""
        host_targets = None if targets is None else targets.detach().cpu().numpy().astype(np.int32)
        self._pieces.append(_Piece(self._sized(maps.unsqueeze(1)).squeeze(1), "map", method, seed, stage, component,
                                   host_targets))

    def add_input(self, pixels: Tensor) -> None:
        """Keep the images themselves, unnormalized [N, 3, H, W] in [0, 1]."""
        self._pieces.append(_Piece(self._sized(pixels), "input", None, None, 0, None, None))

    def clear(self) -> None:
        """Forget what was kept (a new batch)."""
        self._pieces = []

    def table(self, image_ids: list[str]) -> pa.Table | None:
        pieces, self._pieces = self._pieces, []
        if not pieces:
            return None
        inputs = [p for p in pieces if p.kind == "input"]
        maps = [p for p in pieces if p.kind == "map"]
        tables = [self._rows(group, image_ids) for group in (inputs, maps) if group]
        return pa.concat_tables(tables)

    def _rows(self, pieces: list[_Piece], image_ids: list[str]) -> pa.Table:
        stacked = torch.cat([p.arrays for p in pieces]).numpy()  # [pieces * images, ...]
        count = stacked.shape[0]
        rows, images = grid_index((len(pieces), len(image_ids)))
        shape, values, scale = encode_arrays(stacked)
        targets = np.zeros((len(pieces), len(image_ids)), np.int32)
        known = np.array([p.targets is not None for p in pieces])
        for position, piece in enumerate(pieces):  # per piece (method x state), not per image
            if piece.targets is not None:
                targets[position] = piece.targets
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "experiment": pa.array(np.full(count, self.experiment, dtype=object), pa.string()),
                "kind": axis_column([p.kind for p in pieces], rows, pa.string()),
                "method": axis_column([getattr(p.method, "id", None) for p in pieces], rows, pa.string()),
                "reduction": axis_column([getattr(p.method, "reduction", None) for p in pieces], rows, pa.string()),
                "seed": axis_column([p.seed for p in pieces], rows, pa.int32()),
                "mode": pa.array(np.full(count, self.mode, dtype=object), pa.string()),
                "stage": axis_column([p.stage for p in pieces], rows, pa.int32()),
                "component": axis_column([p.component for p in pieces], rows, pa.string()),
                "target": pa.array(targets[rows, images], pa.int32(), mask=~known[rows]),
                "shape": shape,
                "values": values,
                "scale": scale,
            }
        )
