"""A model class in a local file, named in a job as ``model.name: jobs/examples/tiny_net.py:build``.

``build`` is the factory: it gets ``model.kwargs`` (here ``width``) and ``num_classes`` (the
job's ``model.num_classes``, else the dataset's class count) and returns an ``nn.Module`` that maps
[N, 3, H, W] images to [N, num_classes] logits. The file must be self-contained (it is what
travels to the Ray workers); for several files, use a package and name ``package.module:build``.
"""

import torch
from torch import nn


class TinyNet(nn.Module):
    """Conv-BatchNorm-ReLU blocks and a linear head: LRP passes the conservation probe on it."""

    def __init__(self, num_classes: int, width: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.classifier = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


def build(num_classes: int = 10, width: int = 16) -> nn.Module:
    return TinyNet(num_classes, width)
