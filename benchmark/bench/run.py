"""``benchmark bench``: the speed figures of DESIGN §10 for one job, side by side with Quantus.

Figures: images/s; the forward and backward passes the work needs (from the spec) and those the
pipeline really made; the time of exactly those passes alone (with the same backward rules where
a method has them: zennit's hooks for LRP and guided backprop; replaying the same recorded trained
bottom where the pipeline did), measured in the same process on the same module, and the same
passes as plain autograd; the ratio pipeline / bare; peak memory; achieved FLOP rate; and, when
Quantus is installed, seconds per image × model state × method for the methods both tools share.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config.spec import JobSpec, MetricsSpec
from ..experiments.targets import reference_targets
from ..models.threads import intra_op_threads
from .accounting import uncounted
from .bare import bare_seconds
from .pipeline import PipelineMeasurement, measure_pipeline
from .quantus_mprt import QUANTUS_METHODS, measure_quantus, quantus_version


def pass_flops(module: torch.nn.Module, shape: tuple[int, ...], device: torch.device) -> tuple[int, int]:
    """FLOPs of one image's forward, and of its forward + input-gradient backward."""
    x = torch.randn(1, *shape, device=device)
    with FlopCounterMode(display=False) as counter:
        with torch.no_grad():
            module(x)
    forward = counter.get_total_flops()
    leaf = x.clone().requires_grad_(True)
    with FlopCounterMode(display=False) as counter:
        module(leaf)[:, 0].sum().backward()  # .backward: FlopCounterMode's module tracker rejects autograd.grad on a leaf
    return forward, counter.get_total_flops()


def comparison_spec(spec: JobSpec) -> JobSpec | None:
    """The job restricted to what Quantus' MPRT also does: the shared methods, SSIM, no occlusion."""
    methods = [m for m in spec.methods if m.name in QUANTUS_METHODS and m.label is None]
    if not methods:
        return None
    comparison = spec.model_copy(
        update={
            "methods": methods,
            # the similarity Quantus' MPRT is run with (quantus_mprt.py: its ssim), on max-abs normalized maps
            "metrics": MetricsSpec(similarities=["ssim"], normalizations=["max_abs"], absolute=[False]),
            "occlusion": spec.occlusion.model_copy(update={"enabled": False}),
        }
    )
    # MPRT only: the job's other registered experiments (the repaired checks, ...) are left out
    comparison.__pydantic_extra__ = {}
    return comparison


def _images_and_targets(measurement: PipelineMeasurement, spec: JobSpec) -> tuple[torch.Tensor, torch.Tensor]:
    runner = measurement.runner
    records = [record for task_records in [runner.dataset.index()] for record in task_records]
    start = spec.dataset.offset
    limit = spec.dataset.limit or len(records)
    batch, _ = next(runner._batches(tuple(records[start : start + limit])))
    batch = batch.to(runner.model.device)
    inputs = runner.model.normalize(batch.pixels)
    with torch.no_grad():
        logits = runner.model.module(inputs)
    return inputs, reference_targets(spec.randomization.target, batch.labels, logits)


def run_bench(spec: JobSpec, out: Path, with_quantus: bool = True, repeats: int = 3) -> dict[str, Any]:
    """Every figure with ``runtime.threads`` torch threads, as the pipeline runs (bare passes and Quantus too)."""
    with intra_op_threads(spec.runtime.threads):
        return _run_bench(spec, out, with_quantus, repeats)


def _run_bench(spec: JobSpec, out: Path, with_quantus: bool, repeats: int) -> dict[str, Any]:
    full = measure_pipeline(spec, str(out / "full"))
    device = full.runner.model.device
    shape = (3, spec.dataset.crop, spec.dataset.crop)
    module = full.runner.model.module
    methods = full.runner.evaluator.methods
    bare, per_call = bare_seconds(full.runner.model, full.calls, shape, methods, repeats)
    bare_plain, _ = bare_seconds(full.runner.model, full.calls, shape, methods, repeats, plain=True)
    forward_flops, forward_backward_flops = pass_flops(module, shape, device)
    recorded = full.recorded
    flops = full.images * (recorded.forward_backward * forward_backward_flops + recorded.forward_only * forward_flops)
    report: dict[str, Any] = {
        "job": spec.name,
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "host": platform.node(),
        "torch_threads": torch.get_num_threads(),
        "model": spec.model.name,
        "image_size": spec.dataset.crop,
        "images": full.images,
        "model_states": full.states,
        "randomizations_per_batch": full.randomizations_per_batch,
        "batches": full.batches,
        "methods": full.methods,
        "passes_per_image_expected": {"forward_backward": full.expected.forward_backward, "forward": full.expected.forward_only},
        "passes_per_image_recorded": {"forward_backward": recorded.forward_backward, "forward": recorded.forward_only},
        "methods_not_counted_in_advance": uncounted(methods),
        "backward_passes_per_image_by_rules": full.backward_passes_by_rules(),
        "replayed_passes_per_image": full.replayed_passes(),
        "pipeline_seconds": full.seconds,
        "bare_seconds": bare,
        "pipeline_over_bare": full.seconds / bare if bare else float("nan"),
        "bare_plain_seconds": bare_plain,
        "images_per_second": full.images / full.seconds,
        "peak_memory_bytes": full.peak_memory_bytes,
        "achieved_tflops": flops / full.seconds / 1e12,
        "bare_call_seconds": per_call,
    }
    comparison = comparison_spec(spec) if with_quantus and quantus_version() else None
    if comparison is not None:
        ours = measure_pipeline(comparison, str(out / "comparison"))
        inputs, targets = _images_and_targets(ours, comparison)
        theirs = measure_quantus(module, inputs, targets, [m.name for m in comparison.methods], device)
        ours_unit = ours.seconds / (ours.images * ours.states * len(ours.methods))
        theirs_unit = sum(theirs.per_unit(method) for method in theirs.seconds) / len(theirs.seconds)
        report["quantus"] = {
            "version": theirs.version,
            "model_states": theirs.states,
            "ours_model_states": ours.states,
            "seconds_per_image_state_method": {
                method: {"ours": ours_unit, "quantus": theirs.per_unit(method), "speedup": theirs.per_unit(method) / ours_unit}
                for method in theirs.seconds
            },
            "all_methods": {"ours": ours_unit, "quantus": theirs_unit, "speedup": theirs_unit / ours_unit},
            "note": "ours: one job explaining every state with all methods (gradient and gradient x input share "
            "one pass), its time split evenly over the methods; same images, methods and SSIM; each tool over "
            "its own layer list",
        }
    return report


def format_report(report: dict[str, Any]) -> str:
    rows = [
        ("device", f"{report['device']} ({report['torch_threads']} threads)"),
        ("model / input", f"{report['model']} / {report['image_size']}x{report['image_size']}"),
        ("images × model states", f"{report['images']} × {report['model_states']}"),
        ("randomizations per batch", f"{report['randomizations_per_batch']:g} (one per randomized model state, "
                                     f"{report['batches']} batches)"),
        ("methods", ", ".join(report["methods"])),
        ("passes per image (expected)", "{forward_backward} fwd+bwd, {forward} fwd".format(**report["passes_per_image_expected"])
         + (f" (without {', '.join(report['methods_not_counted_in_advance'])}: passes not known in advance)"
            if report.get("methods_not_counted_in_advance") else "")),
        ("passes per image (recorded)", "{forward_backward} fwd+bwd, {forward} fwd".format(**report["passes_per_image_recorded"])),
        ("bottom forward reused", f"in {report['replayed_passes_per_image']} of the fwd+bwd passes per image"),
        ("pipeline time", f"{report['pipeline_seconds']:.2f} s"),
        ("bare passes time", f"{report['bare_seconds']:.2f} s"),
        ("pipeline / bare", f"{report['pipeline_over_bare']:.3f}"),
        ("bare, plain autograd", f"{report['bare_plain_seconds']:.2f} s (every backward without LRP / guided rules)"),
        ("images/s", f"{report['images_per_second']:.3f}"),
        ("achieved", f"{report['achieved_tflops']:.3f} TFLOP/s"),
        ("peak memory", f"{report['peak_memory_bytes'] / 2**30:.2f} GiB"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    quantus = report.get("quantus")
    if quantus:
        lines.append("")
        lines.append(f"per image × model state × method (ours: {quantus['ours_model_states']} states; "
                     f"Quantus {quantus['version']} MPRT: {quantus['model_states']} states)")
        lines.append(f"{'method':<18} {'ours s':>10} {'quantus s':>10} {'speedup':>8}")
        rows = {**quantus["seconds_per_image_state_method"], "all (mean)": quantus["all_methods"]}
        for method, row in rows.items():
            lines.append(f"{method:<18} {row['ours']:>10.4f} {row['quantus']:>10.4f} {row['speedup']:>7.2f}x")
    else:
        lines.append("(Quantus not installed: no side-by-side figures; pip install quantus)")
    return "\n".join(lines)
