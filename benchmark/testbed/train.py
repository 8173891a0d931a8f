"""Training the test bed: a ``TinyResNet`` on the digits' training split, deterministically.

The same recipe, code and data give the same weights on a machine: the seed fixes the
initialisation and the batch order, and torch runs with a fixed number of intra-op threads
(the float reduction order depends on it). SGD with Nesterov momentum, a cosine learning-rate
decay per step, cross-entropy, BatchNorm in training mode; inputs normalized exactly as
``ModelBundle.normalize`` does, from the pixels the ``digits`` dataset kind decodes.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..data.digits import load_digits, split_indices, upsample
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from ..models.tiny_resnet import TinyResNet
from ..models.threads import intra_op_threads

MIN_VAL_ACCURACY = 0.90


@dataclass(frozen=True)
class Recipe:
    epochs: int = 8
    batch_size: int = 64
    learning_rate: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 1

    def describe(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Trained:
    state_dict: dict[str, torch.Tensor]
    val_accuracy: float
    train_accuracy: float
    seconds: float


def split_tensors(split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Model inputs [N, 3, 32, 32] (normalized like ``ModelBundle.normalize``) and labels [N] of a split."""
    images, labels = load_digits()
    indices = split_indices(split)
    pixels = torch.from_numpy(np.stack([upsample(images[i]) for i in indices])).permute(0, 3, 1, 2).float() / 255.0
    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (pixels - mean) / std, torch.from_numpy(labels[indices]).long()


def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor, batch_size: int = 256) -> float:
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(inputs[i : i + batch_size]).argmax(1) for i in range(0, len(inputs), batch_size)])
    return float((predictions == labels).float().mean())


def train(recipe: Recipe) -> Trained:
    """Train from scratch; the result is a pure function of the recipe (on one machine)."""
    started = time.perf_counter()
    with intra_op_threads(recipe.threads), torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        model = TinyResNet(num_classes=10)
        train_x, train_y = split_tensors("train")
        val_x, val_y = split_tensors("val")
        order = torch.Generator().manual_seed(recipe.seed)
        optimizer = torch.optim.SGD(
            model.parameters(), lr=recipe.learning_rate, momentum=recipe.momentum,
            weight_decay=recipe.weight_decay, nesterov=True,
        )
        per_epoch = math.ceil(len(train_x) / recipe.batch_size)
        total = recipe.epochs * per_epoch
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / total)))
        loss_function = nn.CrossEntropyLoss()
        for _ in range(recipe.epochs):
            model.train()
            permutation = torch.randperm(len(train_x), generator=order)
            for first in range(0, len(train_x), recipe.batch_size):
                batch = permutation[first : first + recipe.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_function(model(train_x[batch]), train_y[batch]).backward()
                optimizer.step()
                schedule.step()
        model.eval()
        result = Trained(
            {key: value.detach().clone() for key, value in model.state_dict().items()},
            val_accuracy=accuracy(model, val_x, val_y),
            train_accuracy=accuracy(model, train_x, train_y),
            seconds=time.perf_counter() - started,
        )
    if result.val_accuracy < MIN_VAL_ACCURACY:
        raise RuntimeError(
            f"the test bed reached a validation accuracy of {result.val_accuracy:.3f} < {MIN_VAL_ACCURACY} "
            f"with recipe {recipe.describe()}: not a trained network; nothing cached"
        )
    return result
