"""What one batch's experiments share: inputs, targets and the trained model's outputs and maps."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class BatchState:
    image_ids: list[str]
    inputs: torch.Tensor  # normalized [N, C, H, W] on the model's device
    targets: torch.Tensor  # [N] classes explained at stage 0
    logits: torch.Tensor  # [N, classes] of the trained model
    reference_maps: list[torch.Tensor]  # every method's stage-0 maps [N, H, W], in the job's method order
    shard: int
    saved: torch.Tensor | None = None  # indices of the images whose arrays are saved (runtime.save_maps)
