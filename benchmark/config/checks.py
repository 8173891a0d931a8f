"""Checks that need more than one value: sizes against the crop, names against the file system.

The spec's types accept ``occlusion.kernels: [40]`` and ``metrics.ssim.win_size: 99``; only
next to ``dataset.crop: 32`` do they become impossible (one tile, so every method gets the same
curve; a window larger than the maps). Such values are refused here, at load, with their key
path, instead of failing (or silently producing nothing useful) inside every shard. Checks that
need the model itself (a boundary pattern that matches no module) run in the driver's preflight.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator

from .spec import JobSpec


@dataclass(frozen=True)
class Problem:
    path: str  # key path as written in the job file, e.g. occlusion.kernels.1
    message: str
    value: Any = None

    def line(self) -> str:
        shown = "" if self.value is None else f" (got {self.value!r})"
        return f"  {self.path}: {self.message}{shown}"


def job_name_problems(spec: JobSpec) -> Iterator[Problem]:
    """The name becomes a folder (``runs/<name>``) and part of Ray actor and run ids."""
    name = spec.name
    if "/" in name or "\\" in name or name in (".", "..") or any(ord(c) < 32 for c in name):
        yield Problem(
            "name", "must not contain path separators, control characters or be '.'/'..': it names the "
            "output folder runs/<name> (choose another name, or set --out)", name,
        )


def occlusion_problems(spec: JobSpec) -> Iterator[Problem]:
    occlusion, crop = spec.occlusion, spec.dataset.crop
    for index, kernel in enumerate(occlusion.kernels):
        if kernel < 1:
            yield Problem(f"occlusion.kernels.{index}", "a tile side must be >= 1", kernel)
        elif occlusion.enabled and kernel >= crop:
            yield Problem(
                f"occlusion.kernels.{index}",
                f"a {kernel} px tile covers the whole {crop} px crop (dataset.crop): one tile, so every method "
                "would get the same curve; use tiles smaller than the crop",
                kernel,
            )
    if occlusion.enabled and occlusion.blur_kernel > crop:
        yield Problem(
            "occlusion.blur_kernel",
            f"the blur kernel is larger than the {crop} px images it blurs (dataset.crop); use at most {crop}",
            occlusion.blur_kernel,
        )


def ssim_problems(spec: JobSpec) -> Iterator[Problem]:
    from ..metrics.ssim import SSIMWindow

    if "ssim" not in spec.metrics.similarities:
        return
    ssim, crop = spec.metrics.ssim, spec.dataset.crop
    window = SSIMWindow(ssim.win_size, ssim.gaussian_weights, ssim.sigma, ssim.truncate, ssim.use_sample_covariance)
    if window.size > crop:
        source = "" if ssim.win_size is not None else (
            f" (skimage's default for Gaussian weights with sigma {ssim.sigma:g}, truncate {ssim.truncate:g})"
        )
        yield Problem(
            "metrics.ssim.win_size",
            f"the SSIM window of {window.size} px{source} is larger than the {crop} px maps (dataset.crop); "
            f"use an odd win_size of at most {crop if crop % 2 else crop - 1}",
            ssim.win_size,
        )


CHECKS: tuple[Callable[[JobSpec], Iterator[Problem]], ...] = (job_name_problems, occlusion_problems, ssim_problems)


def consistency_problems(spec: JobSpec) -> list[Problem]:
    return [problem for check in CHECKS for problem in check(spec)]


def format_problems(problems: list[Problem], source: str) -> str:
    count = len(problems)
    return "\n".join([f"{source}: invalid job spec ({count} problem{'s' if count > 1 else ''})"]
                     + [problem.line() for problem in problems])
