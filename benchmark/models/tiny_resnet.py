"""A small ResNet for 32-px inputs: the architecture of the trained-network test bed (``benchmark.testbed``).

It is a member of the ResNet family in every way the rest of the code looks at: torchvision's
``BasicBlock`` (so zennit's ResNet canonizer adds its residual ``Sum``), torchvision's module names
(``conv1``/``bn1`` stem, ``layerX.Y`` blocks with ``.conv1``/``.conv2`` and ``downsample``, ``fc``
head), ReLU, BatchNorm and max pooling. So the paper's top-down rule (``fc``, then down to each
``.conv1``), guided backprop, every LRP composite, the skip-path split and the activation
statistics apply unchanged — on a network small enough to train on a CPU in about a minute.

Layout (32-px input): 3×3 stem conv, BatchNorm, ReLU, 2×2 max pool (16 px), then three stages of
``blocks`` BasicBlocks of ``widths`` channels (16, 8, 4 px), global average pool and the dense head.
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, conv1x1

WIDTHS = (16, 32, 64)
BLOCKS = (2, 2, 2)


class TinyResNet(nn.Module):
    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = WIDTHS, blocks: tuple[int, ...] = BLOCKS):
        super().__init__()
        self.conv1 = nn.Conv2d(3, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        channels = widths[0]
        for index, (width, count) in enumerate(zip(widths, blocks), start=1):
            stride = 1 if index == 1 else 2
            layer = []
            for block in range(count):
                downsample = None
                if block == 0 and (stride != 1 or channels != width):
                    downsample = nn.Sequential(conv1x1(channels, width, stride), nn.BatchNorm2d(width))
                layer.append(BasicBlock(channels, width, stride if block == 0 else 1, downsample))
                channels = width
            self.add_module(f"layer{index}", nn.Sequential(*layer))
        self.stages = len(widths)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        for module in self.modules():  # torchvision's ResNet initialisation
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for index in range(1, self.stages + 1):
            x = getattr(self, f"layer{index}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


def tiny_resnet(num_classes: int, input_size: int) -> nn.Module:
    return TinyResNet(num_classes)
