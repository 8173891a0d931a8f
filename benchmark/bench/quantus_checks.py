"""Our sMPRT, eMPRT and random-logit scores next to Quantus 0.6's, on the same maps (issue 13, item 7).

Quantus is optional (``pip install quantus``, the ``bench`` extra). Each of its metrics is run with
our explanation as its explain function (``quantus.explain`` itself for sMPRT, which calls it
directly), on its own model states; every map it sees is recorded. Then, on exactly those maps:

1. Quantus' own score;
2. the same score recomputed from its documented choices (must equal 1: we know what it does);
3. our definition, one choice changed at a time, ending at what ``benchmark`` computes — so every
   difference between the tools is attributed to one named choice.

The choices: Quantus' ``ssim`` compares *flattened* maps (skimage's SSIM of 1-D signals, windows of 7
consecutive pixels of a row-major vector) where we use 2-D windows; its normalization divides by a
statistic of the *whole batch* (``normalise_axes`` None), ours per image; its random-logit class is
drawn by ``np.random.seed(seed)`` per batch (the same position of every batch gets the same offset),
ours from (image id, seed); sMPRT's noise is unseeded ``np.random.randn``, ours keyed; eMPRT's bin
rules take ``a_batch[0].ndim`` (the number of axes) for the number of elements and are computed once
on the batch. Model states differ too (Quantus re-initializes every module with ``reset_parameters``
after ``torch.manual_seed(seed + 1)``, BatchNorm included) — which is why the comparison uses
Quantus' states for both tools.

``python -m benchmark.bench.quantus_checks`` prints the table of docs/repaired-checks.md for the
trained digits test bed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import torch
from skimage.metrics import structural_similarity

from ..attribution import AttributionContext, AttributionMethod, reduce_channels
from ..config.spec import MetricsSpec
from ..metrics import MapComparer, histogram_entropy
from ..metrics.entropy import HistogramBins
from ..models.bundle import ModelBundle
from .quantus_mprt import _install_workarounds


@dataclass
class Steps:
    """Mean per-image scores, step by step from Quantus' value to ours, with what each step changes."""

    check: str
    method: str
    steps: list[tuple[str, float]] = field(default_factory=list)
    quantus: np.ndarray | None = None  # per image
    reproduced: np.ndarray | None = None  # per image: step 2, equal to Quantus'

    def add(self, label: str, values: np.ndarray) -> None:
        self.steps.append((label, float(np.nanmean(values))))


class Explainer:
    """Our method as a Quantus explain function: maps [N, 1, H, W] of whatever module Quantus passes, recorded."""

    def __init__(self, model: ModelBundle, method: AttributionMethod) -> None:
        self.model, self.method = model, method
        self.calls: list[tuple[torch.nn.Module, np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, model, inputs, targets, **kwargs) -> np.ndarray:
        bundle = dataclasses.replace(self.model, module=model.eval())
        x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(targets), dtype=torch.long).view(-1)
        context = AttributionContext([f"q{i}" for i in range(len(y))])
        maps = reduce_channels(self.method.attribute(bundle, x, y, context), self.method.reduction)
        result = maps.unsqueeze(1).double().numpy()
        self.calls.append((model, np.asarray(inputs).copy(), np.asarray(targets).copy(), result.copy()))
        return result


def flat_ssim(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Quantus 0.6's ``ssim`` per row of flattened maps: skimage on 1-D vectors, joint data range."""
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    return np.array([structural_similarity(x, y, data_range=float(np.ptp(np.concatenate([x, y])))) for x, y in zip(a, b)])


def batch_normalize(maps: np.ndarray, kind: str, batch: int) -> np.ndarray:
    """Quantus' normalization: one statistic per batch of ``batch`` maps (normalise_axes=None)."""
    out = maps.astype(np.float64).copy()
    for start in range(0, len(out), batch):
        part = out[start:start + batch]
        scale = np.abs(part).max() if kind == "max_abs" else np.sqrt(np.mean(part**2))
        if scale > 0:
            out[start:start + batch] = part / scale
    return out


def image_normalize(maps: np.ndarray, kind: str) -> np.ndarray:
    return batch_normalize(maps, kind, 1)


def ours(metric: str, normalization: str, absolute: bool, reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Our 2-D comparison with per-image normalization of maps [N, 1, H, W]."""
    comparer = MapComparer(MetricsSpec(similarities=[metric], normalizations=[normalization], absolute=[absolute]))
    a, b = (torch.from_numpy(m[:, 0]) for m in (reference, other))
    values, _ = comparer.compare(comparer.prepare(a), b)
    return values[0].numpy()


def quantus_offclasses(targets: np.ndarray, classes: int, seed: int, batch: int) -> np.ndarray:
    """RandomLogit's classes: ``np.random.seed(seed)`` at every batch, then its draw."""
    drawn = []
    for start in range(0, len(targets), batch):
        y = targets[start:start + batch]
        np.random.seed(seed)
        table = np.stack([np.arange(classes) for _ in range(len(y))])
        mask = np.ones_like(table)
        mask[np.arange(len(y)), y] = 0
        index = np.random.randint(0, classes - 1, len(y))
        drawn.append(table[mask.astype(bool)].reshape(len(y), -1)[np.arange(len(y)), index])
    return np.concatenate(drawn)


def random_logit(model: ModelBundle, method: AttributionMethod, x: np.ndarray, y: np.ndarray, classes: int,
                 seed: int, batch: int, image_ids: list[str]) -> Steps:
    import quantus

    from ..experiments.random_logit import other_classes

    similarity = _install_workarounds(quantus)
    explain = Explainer(model, method)
    module = model.module
    reference = explain(module, x, y)
    metric = quantus.RandomLogit(similarity_func=similarity, num_classes=classes, seed=seed, disable_warnings=True)
    scores = np.asarray(metric(model=module, x_batch=x, y_batch=y, a_batch=reference.copy(), explain_func=explain,
                               device="cpu", batch_size=batch), dtype=np.float64)
    drawn = quantus_offclasses(y, classes, seed, batch)
    assert np.array_equal(np.concatenate([call[2] for call in explain.calls[1:]]), drawn), "Quantus drew other classes"
    other = np.concatenate([call[3] for call in explain.calls[1:]])
    steps = Steps("random_logit", method.id, quantus=scores)
    steps.add("Quantus 0.6 RandomLogit (1-D SSIM; max-normalized over the data set / over each batch)", scores)
    # Quantus normalizes the given a_batch over all images at once, the other class's maps per batch
    whole = batch_normalize(reference, "max_abs", len(reference))
    steps.reproduced = flat_ssim(whole, batch_normalize(other, "max_abs", batch))
    steps.add("the same, recomputed", steps.reproduced)
    steps.add("max-abs normalization per image", flat_ssim(image_normalize(reference, "max_abs"), image_normalize(other, "max_abs")))
    steps.add("2-D SSIM (ours, max-abs per image)", ours("ssim", "max_abs", False, reference, other))
    steps.add("second-moment per image (ours, the paper's)", ours("ssim", "second_moment", False, reference, other))
    ours_class = other_classes(image_ids, torch.from_numpy(y), classes, seed).numpy()
    other_ours = explain(module, x, ours_class)
    steps.add("our class draw, a function of the image id (= benchmark's random_logit row)",
              ours("ssim", "second_moment", False, reference, other_ours))
    return steps


def efficient_mprt(model: ModelBundle, method: AttributionMethod, x: np.ndarray, y: np.ndarray, seed: int,
                   batch: int) -> Steps:
    import quantus

    _install_workarounds(quantus)
    explain = Explainer(model, method)
    metric = quantus.EfficientMPRT(layer_order="top_down", seed=seed, complexity_func_kwargs={"rule": "Sturges Formula"},
                                   disable_warnings=True)
    scores = np.asarray(metric(model=model.module, x_batch=x, y_batch=y, a_batch=None, explain_func=explain,
                               device="cpu", batch_size=batch), dtype=np.float64)
    per_batch = len(range(0, len(x), batch))
    # the original model's maps come first (batch by batch), the fully randomized model's last (skip_layers)
    trained = np.concatenate([call[3] for call in explain.calls[:per_batch]])
    randomized = np.concatenate([call[3] for call in explain.calls[-per_batch:]])
    bins = metric.complexity_func_kwargs["n_bins"]
    steps = Steps("emprt", method.id, quantus=scores)
    steps.add(f"Quantus 0.6 EfficientMPRT, rule 'Sturges Formula' on a_batch[0].ndim = 3 axes: {bins} bins", scores)

    def change(n_bins: int | str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        counts = HistogramBins(n_bins).counts(torch.from_numpy(a[:, 0]))
        h_e = histogram_entropy(torch.from_numpy(a[:, 0]), counts)
        h_r = histogram_entropy(torch.from_numpy(b[:, 0]), counts)
        return ((h_r - h_e) / h_e).numpy()

    steps.reproduced = change(int(bins), trained, randomized)
    steps.add("the same, recomputed (numpy histogram, scipy entropy)", steps.reproduced)
    steps.add("ours, 'sturges' from the map's 1024 elements: 11 bins", change("sturges", trained, randomized))
    steps.add("ours, 100 bins (the default; Quantus' without a rule)", change(100, trained, randomized))
    return steps


def smooth_mprt(model: ModelBundle, method: AttributionMethod, x: np.ndarray, y: np.ndarray, seed: int, batch: int,
                samples: int) -> Steps:
    import quantus

    similarity = _install_workarounds(quantus)
    explain = Explainer(model, method)
    original = quantus.explain
    quantus.explain = explain  # SmoothMPRT calls quantus.explain, not its explain_func
    try:
        metric = quantus.SmoothMPRT(similarity_func=similarity, layer_order="top_down", seed=seed, nr_samples=samples,
                                    return_last_correlation=True, skip_layers=True, disable_warnings=True)
        scores = np.asarray(metric(model=model.module, x_batch=x, y_batch=y, a_batch=None, explain_func=explain,
                                   device="cpu", batch_size=batch), dtype=np.float64)
    finally:
        quantus.explain = original
    # its calls: the smoothed maps of the original model twice (its a_batch, then its 'original' entry), then
    # of the fully randomized model (skip_layers); each batch by batch, the N copies of a batch in a row
    per_batch = len(range(0, len(x), batch))
    groups = [explain.calls[i:i + samples] for i in range(0, len(explain.calls), samples)]
    assert len(groups) == 3 * per_batch, "SmoothMPRT explained more than the original and the last model"
    smoothed = [np.concatenate([np.mean([call[3] for call in group], axis=0) for group in groups[i:i + per_batch]])
                for i in range(0, len(groups), per_batch)]
    reference, last = smoothed[0], smoothed[2]
    steps = Steps("smprt", method.id, quantus=scores)
    steps.add(f"Quantus 0.6 SmoothMPRT, N = {samples}, last layer (1-D SSIM of absolute maps, second moment over the batch)", scores)
    steps.reproduced = flat_ssim(np.abs(batch_normalize(reference, "second_moment", batch)),
                                 np.abs(batch_normalize(last, "second_moment", batch)))
    steps.add("the same, recomputed", steps.reproduced)
    steps.add("second moment per image", flat_ssim(np.abs(image_normalize(reference, "second_moment")),
                                                   np.abs(image_normalize(last, "second_moment"))))
    steps.add("2-D SSIM (ours, absolute maps)", ours("ssim", "second_moment", True, reference, last))
    steps.add("signed maps (ours, the paper's)", ours("ssim", "second_moment", False, reference, last))
    return steps


def compare(model: ModelBundle, methods: list[AttributionMethod], x: np.ndarray, y: np.ndarray, image_ids: list[str],
            classes: int, *, seed: int = 0, batch: int = 16, samples: int = 10) -> list[Steps]:
    """Every check for every method, on the same images."""
    results = []
    for method in methods:
        results.append(random_logit(model, method, x, y, classes, seed, batch, image_ids))
        results.append(efficient_mprt(model, method, x, y, seed, batch))
        results.append(smooth_mprt(model, method, x, y, seed, batch, samples))
    return results


def markdown(results: list[Steps]) -> str:
    """One table per check: its steps as rows, the methods as columns (means over images)."""
    lines = []
    for check in dict.fromkeys(r.check for r in results):
        rows = [r for r in results if r.check == check]
        lines += [f"**{check}**", "", "| step | " + " | ".join(r.method for r in rows) + " |",
                  "|---|" + "---|" * len(rows)]
        for i, (label, _) in enumerate(rows[0].steps):
            lines.append(f"| {label} | " + " | ".join(f"{r.steps[i][1]:.3f}" for r in rows) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    """The table of docs/repaired-checks.md: the trained digits test bed, 32 validation digits."""
    import warnings

    from ..attribution import build_method
    from ..config import validate_job
    from ..config.spec import GradientSpec, GuidedBackpropSpec, LRPSpec
    from ..data import Preprocess, build_dataset, select_records
    from ..models import load_model

    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    spec = validate_job({"name": "quantus", "model": {"name": "tiny-resnet", "weights": "testbed"},
                         "dataset": {"kind": "digits", "split": "val", "limit": 32}, "methods": [{"name": "gradient"}],
                         "runtime": {"device": "cpu"}})
    model, dataset = load_model(spec), build_dataset(spec)
    records = select_records(spec, dataset)
    preprocess = Preprocess.from_spec(spec.dataset)
    x = model.normalize(torch.stack([preprocess(dataset.decode(r))[0] for r in records])).numpy()
    y = np.array([r.label for r in records])
    methods = [build_method(m, model) for m in (GradientSpec(name="gradient"), GuidedBackpropSpec(name="guided_backprop"),
                                                LRPSpec(name="lrp", composite="epsilon_plus_flat"))]
    results = compare(model, methods, x, y, [r.image_id for r in records], 10)
    for r in results:
        assert np.allclose(r.quantus, r.reproduced, rtol=1e-9, atol=1e-12), (r.check, r.method)
    print(markdown(results))


if __name__ == "__main__":
    main()
