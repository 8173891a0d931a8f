"""The same randomization check through Quantus' MPRT, timed side by side (issue 7).

Quantus is optional (``pip install quantus``). Version 0.6.0 needs two shims to run here, which
change no value: its ``ssim`` similarity returns a list where ``mprt.py`` calls ``.tolist()``
(wrapped to return an array), and its AUC helpers call ``np.trapz``, removed in NumPy 2.
Its MPRT randomizes every module with ``reset_parameters`` (BatchNorm included) one at a time,
re-seeding torch with the same seed for every layer, and computes SSIM on flattened 1-D
vectors: for speed that does not matter; for numbers, ours follow DESIGN §5.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

# Our method names -> Quantus ``explain`` arguments (Captum for the gradients; Quantus 0.6.0's
# Captum list has no guided backprop, so that one goes through its zennit path).
QUANTUS_METHODS = {
    "gradient": {"method": "Saliency"},
    "gradient_x_input": {"method": "InputXGradient"},
    "guided_backprop": {"xai_lib": "zennit", "method": "Gradient", "composite": "guided_backprop"},
}


@dataclass
class QuantusMeasurement:
    version: str
    seconds: dict[str, float]  # per method
    states: int  # model states Quantus explains: the original and one per layer in its list
    images: int

    def per_unit(self, method: str) -> float:
        """Seconds per image × model state × method."""
        return self.seconds[method] / (self.images * self.states)


def quantus_version() -> str | None:
    try:
        import quantus
    except ImportError:
        return None
    return quantus.__version__


def _install_workarounds(quantus) -> callable:
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid  # type: ignore[attr-defined]
    original = quantus.similarity_func.ssim

    def ssim_array(a, b, batched: bool = False, **kwargs):
        return np.asarray(original(a, b, batched=batched, **kwargs))

    return ssim_array


def measure_quantus(module: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, methods: list[str],
                    device: torch.device) -> QuantusMeasurement | None:
    """Time Quantus' MPRT (top-down, SSIM) for each method on the same images; None without Quantus."""
    try:
        import quantus
    except ImportError:
        return None
    similarity = _install_workarounds(quantus)
    x = inputs.detach().cpu().numpy()
    y = targets.detach().cpu().numpy()
    seconds: dict[str, float] = {}
    states = 0
    for method in methods:
        metric = quantus.MPRT(
            similarity_func=similarity, layer_order="top_down", disable_warnings=True, display_progressbar=False
        )
        # Quantus gets the model as its users have it: torch's default memory layout, not our channels-last
        model = copy.deepcopy(module).to(memory_format=torch.contiguous_format).eval()
        started = time.perf_counter()
        scores = metric(
            model=model, x_batch=x, y_batch=y, a_batch=None, explain_func=quantus.explain,
            explain_func_kwargs={**QUANTUS_METHODS[method], "device": str(device)},
            device=str(device), batch_size=len(x),
        )
        seconds[method] = time.perf_counter() - started
        states = len(scores)  # 'original' plus one entry per randomized layer
    return QuantusMeasurement(quantus.__version__, seconds, states, len(x))
