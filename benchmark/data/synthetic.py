"""``synthetic``: deterministic in-memory images with random labels, for tests and smoke runs.

Each image is a pure function of (seed, index): smooth coloured blobs on a gradient plus a
little noise, so that attribution maps have spatial structure rather than being pure noise.
"""

from __future__ import annotations

import numpy as np

from .base import ImageDataset, ImageRecord


class SyntheticImages(ImageDataset):
    kind = "synthetic"

    def __init__(self, count: int, seed: int, num_classes: int, height: int = 96, width: int = 128) -> None:
        self.count, self.seed, self.num_classes = count, seed, num_classes
        self.height, self.width = height, width

    def index(self) -> list[ImageRecord]:
        labels = np.random.default_rng([self.seed, 0]).integers(0, self.num_classes, size=self.count)
        return [
            ImageRecord(image_id=f"synthetic-{i:05d}", source=f"synthetic:{self.seed}:{i}", label=int(labels[i]))
            for i in range(self.count)
        ]

    def decode(self, record: ImageRecord) -> np.ndarray:
        index = int(record.source.rsplit(":", 1)[1])
        rng = np.random.default_rng([self.seed, 1, index])
        yy, xx = np.mgrid[0 : self.height, 0 : self.width].astype(np.float32)
        image = np.stack([xx / self.width, yy / self.height, 0.5 * np.ones_like(xx)], axis=2) * 0.4
        for _ in range(4):
            cy, cx = rng.uniform(0, self.height), rng.uniform(0, self.width)
            radius = rng.uniform(6, max(8.0, self.height / 3))
            blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * radius**2))
            image += blob[:, :, None] * rng.uniform(0, 0.8, size=3)[None, None, :]
        image += rng.normal(0, 0.03, size=image.shape)
        return (np.clip(image, 0, 1) * 255).astype(np.uint8)

    def describe(self) -> dict:
        return {"kind": self.kind, "count": self.count, "seed": self.seed}
