"""The loop a researcher would write for the same job, timed next to the pipeline (issue 17).

Per batch of images, model state and method: Captum for the gradient family and guided backprop,
zennit for LRP, the maps copied to the host, skimage's SSIM (and numpy / scipy for MSE and
Spearman) per image; the occlusion steps of each image and method as one batch; rows collected
in Python lists and written with pandas at the end. It walks the same model states (the project's
randomizer: the weights must be the same for the outputs to be comparable) and explains the same
targets, so ``compare_outputs`` can check that both did the same work: the same numbers to float
tolerance. The model is a copy in torch's default memory layout, as a user has it.
"""

from __future__ import annotations

import copy
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from skimage.metrics import structural_similarity

from ..attribution import AttributionMethod, reduce_channels
from ..attribution.noise import noise_maps
from ..config.spec import JobSpec, MetricsSpec
from ..experiments.targets import reference_targets, stage_targets
from ..experiments.walk import REFERENCE_SEED, stage_walk
from ..models.bundle import ModelBundle
from ..models.randomization import RandomizationPlan, Randomizer

LOOP_METHODS = ("gradient", "gradient_x_input", "integrated_gradients", "guided_backprop", "lrp", "noise")
LOOP_METRICS = ("ssim", "mse", "spearman")
ZENNIT_COMPOSITES = ("epsilon_plus_flat", "alpha2beta1", "zplus", "epsilon_gamma_box")
TOLERANCE = 1e-4  # absolute, on metric values and occlusion curves (maps agree to float rounding)


def loop_spec(spec: JobSpec) -> JobSpec | None:
    """The job restricted to what the plain loop does: its methods and metrics, the randomization check
    and occlusion (None when no method is left)."""
    methods = [m for m in spec.methods if m.name in LOOP_METHODS]
    if not methods:
        return None
    metrics = [name for name in spec.metrics.similarities if name in LOOP_METRICS] or ["ssim"]
    update: dict[str, Any] = {
        "methods": methods,
        "metrics": spec.metrics.model_copy(update={"similarities": metrics}),
    }
    for name in ("activations", "logits", "skip_path", "kept_activation_explanation"):
        section = getattr(spec, name, None)
        if section is not None and getattr(section, "enabled", False):
            update[name] = section.model_copy(update={"enabled": False})
    update["runtime"] = spec.runtime.model_copy(update={"save_maps": 0})
    job = spec.model_copy(update=update)
    job.__pydantic_extra__ = {}  # the job's registered experiments (the repaired checks, ...) are not the loop's
    return job


@dataclass
class LoopResult:
    seconds: float
    images: int
    states: int
    methods: list[str]
    randomization: pd.DataFrame
    occlusion: pd.DataFrame


class PlainLoop:
    """The researcher's loop for one job: ``run(image_ids, pixels, labels)``."""

    def __init__(self, spec: JobSpec, model: ModelBundle, plan: RandomizationPlan, methods: list[AttributionMethod]) -> None:
        self.spec, self.plan, self.methods = spec, plan, methods
        module = copy.deepcopy(model.module).to(memory_format=torch.contiguous_format).eval()
        self.model = replace(model, module=module)
        self.randomizer = Randomizer(module)

    # -- one method, one batch, one model state ---------------------------------------------------------------
    def explain(self, method: AttributionMethod, x: torch.Tensor, targets: torch.Tensor, image_ids: list[str],
                seed: int, stage: int) -> np.ndarray:
        from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, Saliency

        module, spec = self.model.module, method.spec
        if spec.name == "gradient":
            maps = Saliency(module).attribute(x, target=targets, abs=False)
        elif spec.name == "gradient_x_input":
            maps = InputXGradient(module).attribute(x, target=targets)
        elif spec.name == "guided_backprop":
            maps = GuidedBackprop(module).attribute(x, target=targets)
        elif spec.name == "integrated_gradients":
            maps = IntegratedGradients(module).attribute(
                x, baselines=torch.zeros_like(x), target=targets, n_steps=spec.steps, method=spec.rule,
                internal_batch_size=len(x),
            )
            if spec.rule == "riemann_trapezoid":
                maps = maps * spec.steps / (spec.steps - 1)  # ours: trapezoid weights summing to one
        elif spec.name == "lrp":
            maps = self.lrp(method, x, targets)
        elif spec.name == "noise":
            maps = noise_maps(image_ids, tuple(x.shape[1:]), spec.seed, seed, stage, x.device)
        else:  # pragma: no cover - loop_spec keeps the others out
            raise ValueError(f"the plain loop has no '{spec.name}'")
        return reduce_channels(maps.detach(), method.reduction).cpu().numpy()

    def lrp(self, method: AttributionMethod, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from zennit.attribution import Gradient
        from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlus, EpsilonPlusFlat
        from zennit.torchvision import ResNetCanonizer, VGGCanonizer

        from ..attribution.lrp import CANONIZERS

        spec, family = method.spec, self.model.family
        canonizers = {"resnet": lambda: [ResNetCanonizer()], "vgg": lambda: [VGGCanonizer()]}.get(
            family, CANONIZERS.get(family, list))()
        if spec.composite == "epsilon_plus_flat":
            composite = EpsilonPlusFlat(epsilon=spec.epsilon, canonizers=canonizers)
        elif spec.composite == "alpha2beta1":
            composite = EpsilonAlpha2Beta1(epsilon=spec.epsilon, canonizers=canonizers)
        elif spec.composite == "zplus":
            composite = EpsilonPlus(epsilon=spec.epsilon, canonizers=canonizers)
        elif spec.composite == "epsilon_gamma_box":
            low, high = self.model.input_bounds(x)
            composite = EpsilonGammaBox(low=low, high=high, epsilon=spec.epsilon, gamma=spec.gamma, canonizers=canonizers)
        else:  # the paper's own composites exist in no library: the researcher would code them; ours stand in
            composite = method.backward_rules(self.model, x)
        one_hot = F.one_hot(targets, self.spec.num_classes()).to(x.dtype)
        seed = one_hot if spec.output_relevance == "one" else (lambda out: one_hot * out)
        with Gradient(model=self.model.module, composite=composite) as attributor:
            _, relevance = attributor(x, seed)
        return relevance

    # -- metrics per image, as numpy ----------------------------------------------------------------------------
    def compare(self, reference: np.ndarray, other: np.ndarray) -> list[tuple[str, str, bool, float]]:
        metrics: MetricsSpec = self.spec.metrics
        ssim = metrics.ssim
        rows = []
        for absolute in metrics.absolute:
            a0, b0 = (np.abs(reference), np.abs(other)) if absolute else (reference, other)
            for normalization in metrics.normalizations:
                a, b = normalize(a0, normalization), normalize(b0, normalization)
                for metric in metrics.similarities:
                    if metric == "ssim":
                        data_range = data_range_of(a, b, ssim.data_range)
                        value = structural_similarity(
                            a, b, win_size=ssim.win_size, gaussian_weights=ssim.gaussian_weights, sigma=ssim.sigma,
                            K1=ssim.k1, K2=ssim.k2, use_sample_covariance=ssim.use_sample_covariance,
                            data_range=data_range,
                        )
                    elif metric == "mse":
                        value = np.mean((a.astype(np.float64) - b) ** 2)
                    else:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            value = stats.spearmanr(a.ravel(), b.ravel()).statistic
                    rows.append((metric, normalization, absolute, float(value)))
        return rows

    # -- occlusion: the steps of one image and method as one batch -----------------------------------------------
    def occlusion(self, image_id: str, pixels: torch.Tensor, target: int, maps: dict[str, np.ndarray]) -> list[dict]:
        spec, module = self.spec.occlusion, self.model.module
        before, after = spec.blur_kernel // 2, (spec.blur_kernel - 1) // 2
        blurred = F.avg_pool2d(F.pad(pixels[None], (before, after, before, after), mode=spec.blur_padding),
                               spec.blur_kernel, stride=1)[0]
        rows = []
        with torch.no_grad():
            f0 = self.scores(module(self.model.normalize(pixels[None])), target)
            for kernel in spec.kernels:
                for method_id, image_map in maps.items():
                    rank = pixel_ranks(image_map, kernel)
                    steps = min(spec.steps, int(rank.max()) + 1)
                    ranks = torch.as_tensor(rank, device=pixels.device)
                    occluded = torch.stack([torch.where(ranks < t, blurred, pixels) for t in range(1, steps + 1)])
                    probability, logit = self.scores(module(self.model.normalize(occluded)), target)
                    curve = [f0[0][0]] + probability + [probability[-1]] * (spec.steps - steps)
                    logits = [f0[1][0]] + logit + [logit[-1]] * (spec.steps - steps)
                    rows.append({"image_id": image_id, "method": method_id, "kernel": kernel, "curve": curve,
                                 "logit_curve": logits, "auc": float(np.mean(curve)),
                                 "aopc": float(np.mean(curve[0] - np.asarray(curve)))})
        return rows

    @staticmethod
    def scores(logits: torch.Tensor, target: int) -> tuple[list[float], list[float]]:
        return logits.softmax(dim=-1)[:, target].tolist(), logits[:, target].tolist()

    # -- the whole job ---------------------------------------------------------------------------------------------
    def run(self, image_ids: list[str], pixels: torch.Tensor, labels: torch.Tensor, out: Path | None = None) -> LoopResult:
        with warnings.catch_warnings():  # Captum's notes on inputs without requires_grad and on ReLU hooks
            warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU activations")
            return self._run(image_ids, pixels, labels, out)

    def _run(self, image_ids: list[str], pixels: torch.Tensor, labels: torch.Tensor, out: Path | None) -> LoopResult:
        spec = self.spec
        device = self.model.device
        rows: list[tuple] = []
        curves: list[dict] = []
        states = 0
        started = time.perf_counter()
        for first in range(0, len(image_ids), spec.runtime.batch_size):
            ids = image_ids[first:first + spec.runtime.batch_size]
            batch_pixels = pixels[first:first + len(ids)].to(device)
            x = self.model.normalize(batch_pixels)
            with torch.no_grad():
                logits = self.model.module(x)
            targets = reference_targets(spec.randomization.target, labels[first:first + len(ids)].to(device), logits)
            trained = {m.id: self.explain(m, x, targets, ids, REFERENCE_SEED, 0) for m in self.methods}
            states = 1
            if spec.occlusion.enabled:
                for i, image_id in enumerate(ids):
                    curves += self.occlusion(image_id, batch_pixels[i], int(targets[i]), {k: v[i] for k, v in trained.items()})
            with stage_walk(self.randomizer, self.plan, spec.randomization.seeds) as walk:
                for seed, stage in walk:
                    states += 1
                    stage_logits = None
                    if spec.randomization.target == "own_prediction":
                        with torch.no_grad():
                            stage_logits = self.model.module(x)
                    stage_target = stage_targets(spec.randomization.target, targets, stage_logits)
                    for method in self.methods:
                        maps = self.explain(method, x, stage_target, ids, seed, stage.index)
                        for i, image_id in enumerate(ids):
                            for metric, normalization, absolute, value in self.compare(trained[method.id][i], maps[i]):
                                rows.append((image_id, method.id, seed, stage.index, metric, normalization, absolute, value))
        randomization = pd.DataFrame(rows, columns=["image_id", "method", "seed", "stage", "metric", "normalization",
                                                    "absolute", "value"])
        occlusion = pd.DataFrame(curves)
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            randomization.to_parquet(out / "randomization.parquet")
            if len(occlusion):
                occlusion.to_parquet(out / "occlusion.parquet")
        seconds = time.perf_counter() - started
        return LoopResult(seconds, len(image_ids), states, [m.id for m in self.methods], randomization, occlusion)


def normalize(a: np.ndarray, kind: str) -> np.ndarray:
    """Per-image normalization, written from the formulas (A / sqrt(mean A²); A / max|A|)."""
    if kind == "none":
        return a
    peak = np.abs(a).max()
    scaled = a / peak if peak > 0 else a
    if kind == "max_abs":
        return scaled
    rms = np.sqrt(np.mean(scaled ** 2))
    return scaled / rms if rms > 0 else scaled


def data_range_of(a: np.ndarray, b: np.ndarray, rule: str | float) -> float:
    joint = float(max(a.max(), b.max()) - min(a.min(), b.min()))
    if rule == "joint":
        value = joint
    elif rule == "reference":
        value = float(a.max() - a.min()) or joint
    else:
        return float(rule)
    return value if value > 0 else 1.0


def pixel_ranks(image_map: np.ndarray, kernel: int) -> np.ndarray:
    """Rank of each pixel's k×k tile by mean attribution (0 = highest; ties to the lower tile index)."""
    height, width = image_map.shape
    rows, cols = -(-height // kernel), -(-width // kernel)
    padded = np.full((rows * kernel, cols * kernel), np.nan, dtype=np.float64)
    padded[:height, :width] = image_map
    means = np.nanmean(padded.reshape(rows, kernel, cols, kernel), axis=(1, 3)).ravel()
    order = np.argsort(-means, kind="stable")
    tile_rank = np.empty_like(order)
    tile_rank[order] = np.arange(order.size)
    tiles = (np.arange(height)[:, None] // kernel) * cols + np.arange(width)[None, :] // kernel
    return tile_rank[tiles]


@dataclass
class Agreement:
    """How the loop's outputs compare with the pipeline's, row by row."""

    rows: dict[str, int]  # table -> rows compared
    max_difference: dict[str, float]  # table -> largest absolute difference
    missing: dict[str, int]  # table -> rows of one side the other does not have

    @property
    def equal(self) -> bool:
        return not any(self.missing.values()) and all(v <= TOLERANCE for v in self.max_difference.values())

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "max_difference": self.max_difference, "missing": self.missing,
                "tolerance": TOLERANCE, "equal": self.equal}


def compare_outputs(loop: LoopResult, randomization: pd.DataFrame, occlusion: pd.DataFrame) -> Agreement:
    """The loop's rows against the pipeline's tables (``randomization``, ``occlusion``) on their common keys."""
    keys = ["image_id", "method", "seed", "stage", "metric", "normalization", "absolute"]
    ours = randomization[keys + ["value"]]
    merged = loop.randomization.merge(ours, on=keys, how="outer", suffixes=("_loop", "_ours"), indicator=True)
    both = merged[merged["_merge"] == "both"]
    rows = {"randomization": len(both)}
    missing = {"randomization": int((merged["_merge"] != "both").sum())}
    differences = {"randomization": float(np.nanmax(np.abs(both.value_loop - both.value_ours))) if len(both) else 0.0}
    if len(loop.occlusion) or len(occlusion):
        keys = ["image_id", "method", "kernel"]
        merged = loop.occlusion.merge(occlusion[keys + ["curve", "logit_curve"]], on=keys, how="outer",
                                      suffixes=("_loop", "_ours"), indicator=True)
        both = merged[merged["_merge"] == "both"]
        rows["occlusion"] = len(both)
        missing["occlusion"] = int((merged["_merge"] != "both").sum())
        largest = 0.0
        for column in ("curve", "logit_curve"):
            for a, b in zip(both[f"{column}_loop"], both[f"{column}_ours"]):
                largest = max(largest, float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b)))))
        differences["occlusion"] = largest
    return Agreement(rows, differences, missing)
