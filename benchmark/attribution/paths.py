"""The paths of the averaged-gradient methods: integrated gradients' line, SmoothGrad's cloud."""

from __future__ import annotations

import torch
from torch import Tensor

from . import keyed_rng
from .backward import Path
from .quadrature import quadrature


class StraightLine(Path):
    """Quadrature nodes αₖ on the line from a zero baseline to x (IG): points αₖ·x, weights wₖ.

    The baseline is zero in the model's input space, i.e. the *normalized* all-zero image (the
    dataset-mean colour), as in Captum's default and the paper; not a black image.
    """

    def __init__(self, inputs: Tensor, rule: str, steps: int) -> None:
        alphas, weights = quadrature(rule, steps)
        super().__init__(inputs, torch.from_numpy(weights))
        self.alphas = torch.from_numpy(alphas).to(device=inputs.device, dtype=inputs.dtype)

    def points(self, steps: slice, images: slice) -> Tensor:
        return self.alphas[steps].view(-1, 1, 1, 1, 1) * self.inputs[images].unsqueeze(0)


class GaussianCloud(Path):
    """``samples`` noisy copies x + σₙ·εₙₖ, weight 1/samples (SmoothGrad; sMPRT's copies).

    σₙ = noise_level · (max − min of image n), measured in the model's input space. εₙₖ is a pure
    function of (image key, stream, seed, k) from ``keyed_rng``, so an image's SmoothGrad map does
    not depend on which batch it is in; ``stream`` keeps the noise of different users apart.
    ``clean_last``: the last copy is x itself (Quantus' smooth MPRT: "the last epsilon is zero").
    """

    def __init__(
        self,
        inputs: Tensor,
        image_keys: list[str],
        samples: int,
        noise_level: float,
        seed: int,
        stream: str = "smoothgrad",
        clean_last: bool = False,
    ) -> None:
        super().__init__(inputs, torch.full((samples,), 1.0 / samples, dtype=torch.float64))
        flat = inputs.flatten(1)
        self.sigma = (noise_level * (flat.amax(dim=1) - flat.amin(dim=1))).view(-1, 1, 1, 1)
        self.words = keyed_rng.key_words(image_keys, stream, seed, device=inputs.device)
        self.clean = samples - 1 if clean_last else None  # the index of the noise-free copy

    def noise(self, steps: slice, images: slice) -> Tensor:
        """Standard normal εₙₖ for these steps and images, [k, n, C, H, W]."""
        words = self.words[images]
        ks = torch.arange(steps.start, steps.stop, device=words.device)
        n, k = words.shape[0], ks.shape[0]
        sample_words = keyed_rng.fold(words.repeat(k, 1), ks.repeat_interleave(n))  # step-major
        shape = self.inputs.shape[1:]
        noise = keyed_rng.normal(sample_words, shape.numel()).view(k, n, *shape).to(self.inputs.dtype)
        if self.clean is not None and steps.start <= self.clean < steps.stop:
            noise[self.clean - steps.start] = 0
        return noise

    def points(self, steps: slice, images: slice) -> Tensor:
        return self.inputs[images].unsqueeze(0) + self.sigma[images].unsqueeze(0) * self.noise(steps, images)
