"""Which class is explained (DESIGN §3–4).

Stage 0: the image's ground-truth class where the dataset has one (ImageNet), otherwise the
trained model's highest-scoring class (COCO/VOC and the samples: "explain the highest predicted
label", supplement A.3). Randomized stages: that same target (the paper), the trained model's
prediction, or the randomized model's own argmax (Adebayo et al.).
"""

from __future__ import annotations

import torch


def reference_targets(policy: str, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Targets of the trained model (stage 0) and of every stage under 'label'/'original_prediction'."""
    prediction = logits.argmax(dim=1)
    if policy in ("original_prediction", "own_prediction"):
        return prediction
    return torch.where(labels >= 0, labels, prediction)


def needs_stage_forward(policy: str) -> bool:
    return policy == "own_prediction"


def stage_targets(policy: str, reference: torch.Tensor, stage_logits: torch.Tensor | None) -> torch.Tensor:
    if policy == "own_prediction":
        assert stage_logits is not None
        return stage_logits.argmax(dim=1)
    return reference
