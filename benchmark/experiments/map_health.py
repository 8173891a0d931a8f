"""Which images a method explains with a degenerate map: all zero, or holding a NaN or an infinity.

An all-zero map of the trained model (untrained EfficientNet-B0 from efficientnet_pytorch's
default initialisation: every LRP map; its gradients are ~1e-14) carries no information: every
similarity to it is either undefined (Spearman: NaN) or an artefact of the normalization's
zero-map convention (SSIM, MSE). The counts go with the shard's commit marker and the run summary
warns about them (``results.summary``), so nobody reads a headline built on empty maps.
"""

from __future__ import annotations

from collections import Counter

import torch

KINDS = ("all_zero", "non_finite")


class DegenerateMaps:
    def __init__(self) -> None:
        self.counts: dict[str, Counter[str]] = {}

    def add(self, maps: dict[str, torch.Tensor]) -> None:
        """One batch: method id -> its [N, H, W] maps (the methods some experiment explained)."""
        if not maps:
            return
        flags = torch.stack(
            [torch.stack([(m.flatten(1) == 0).all(1), ~torch.isfinite(m.flatten(1)).all(1)]).sum(1) for m in maps.values()]
        ).tolist()  # [methods, kinds]: one host transfer per batch
        for method, row in zip(maps, flags):
            for kind, count in zip(KINDS, row):
                if count:
                    self.counts.setdefault(method, Counter())[kind] += int(count)

    def take(self) -> dict[str, dict[str, int]]:
        """The counts since the last call (one shard's), method -> kind -> images; then start over."""
        counts, self.counts = {method: dict(kinds) for method, kinds in self.counts.items()}, {}
        return counts
