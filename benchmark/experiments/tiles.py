"""The regions of the occlusion test: non-overlapping k×k tiles ranked by mean attribution.

DESIGN §6 / supplement A.1: the image is cut into non-overlapping k×k tiles (k = 15 and 8) and
the tiles with the highest *average* attribution are occluded first. When H or W is not a
multiple of k the last row / column of tiles is partial; a partial tile is scored by the mean
over its own pixels, so it competes fairly with full tiles (a sum would penalise it).

Ranking is deterministic: ties in the mean go to the lower tile index (row-major over the tile
grid), so a rerun or a resumed shard occludes exactly the same tiles. Tile sums are taken with a
reshape-and-sum rather than scatter-add, whose float atomics on CUDA are not deterministic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def tile_grid(height: int, width: int, tile: int) -> tuple[int, int]:
    """Tiles per column and per row; border tiles are partial (ceil division)."""
    if tile < 1:
        raise ValueError(f"tile size must be >= 1, got {tile}")
    return math.ceil(height / tile), math.ceil(width / tile)


def tile_index(height: int, width: int, tile: int, device: torch.device | None = None) -> Tensor:
    """[H, W] long: the row-major index of the tile each pixel belongs to."""
    _, tiles_per_row = tile_grid(height, width, tile)
    rows = torch.arange(height, device=device) // tile
    cols = torch.arange(width, device=device) // tile
    return rows[:, None] * tiles_per_row + cols[None, :]


def tile_means(maps: Tensor, tile: int) -> Tensor:
    """[B, H, W] -> [B, T]: each tile's mean attribution over its own pixels, T in row-major order."""
    batch, height, width = maps.shape
    rows, cols = tile_grid(height, width, tile)
    values = maps.to(torch.promote_types(maps.dtype, torch.float32))
    # Zero padding up to whole tiles adds nothing to the sums; the divisor is each tile's true area.
    padded = F.pad(values, (0, cols * tile - width, 0, rows * tile - height))
    sums = padded.reshape(batch, rows, tile, cols, tile).sum(dim=(2, 4)).reshape(batch, rows * cols)
    return sums / tile_areas(height, width, tile, sums)


def tile_areas(height: int, width: int, tile: int, like: Tensor) -> Tensor:
    """[T] pixels per tile, row-major: k² inside, less in the partial last row and column."""
    rows, cols = tile_grid(height, width, tile)
    start = torch.arange(max(rows, cols), dtype=like.dtype, device=like.device) * tile
    tall = (height - start[:rows]).clamp(max=tile)
    wide = (width - start[:cols]).clamp(max=tile)
    return (tall[:, None] * wide[None, :]).flatten()


def tile_ranking(maps: Tensor, tile: int) -> tuple[Tensor, int]:
    """[B, H, W] maps -> (rank of each pixel's tile [B, H, W] long, number of tiles).

    Rank 0 is the tile with the highest mean attribution of the *signed* map; step t of the
    occlusion curve replaces the pixels whose rank is < t. Ties go to the lower tile index.
    """
    if maps.dim() != 3:
        raise ValueError(f"maps must be [B, H, W], got shape {tuple(maps.shape)}")
    batch, height, width = maps.shape
    means = tile_means(maps, tile)
    # A stable ascending sort of the negated means is descending with ties kept in index order.
    order = torch.argsort(-means, dim=1, stable=True)
    count = means.shape[1]
    ranks = torch.empty_like(order).scatter_(1, order, torch.arange(count, device=maps.device).expand(batch, count))
    return ranks[:, tile_index(height, width, tile, maps.device)], count


__all__ = ["tile_areas", "tile_grid", "tile_index", "tile_means", "tile_ranking"]
