"""``benchmark bench``: the speed figures of DESIGN §10 for one job, side by side with its two peers.

Figures: images/s; the forward and backward passes the work needs (from the spec) and those the
pipeline really made; the time of exactly those passes alone (with the same backward rules where
a method has them: zennit's hooks for LRP and guided backprop; replaying the same recorded trained
bottom where the pipeline did), measured in the same process on the same module, and the same
passes as plain autograd; the ratio pipeline / bare; peak memory; achieved FLOP rate; the execution
settings the run's probe chose; with ``profile``, where the pipeline's time goes (``..profiling``).
Two peers run on the same images and model states, in turn with the pipeline: the plain loop a
researcher would write (``plain_loop``: Captum, zennit, skimage; its numbers checked against ours)
and, when Quantus is installed, its MPRT, per image × model state × method for the shared methods.
"""

from __future__ import annotations

import platform
import statistics
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config.spec import JobSpec, MetricsSpec
from ..data.loader import ImageBatch, prefetch_batches
from ..experiments.targets import reference_targets
from ..models.threads import intra_op_threads
from ..results import OutputStore, read_table
from .accounting import uncounted
from .bare import bare_seconds
from .pipeline import PipelineMeasurement, measure_pipeline
from .plain_loop import PlainLoop, compare_outputs, loop_spec
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


def job_images(measurement: PipelineMeasurement, spec: JobSpec) -> ImageBatch:
    """Every image of the job (its offset and limit), decoded once, on the host: what the peers get."""
    runner = measurement.runner
    records = runner.dataset.index()
    start = spec.dataset.offset
    limit = spec.dataset.limit or len(records)
    selected = records[start : start + limit]
    batch, _ = next(prefetch_batches(runner.dataset, selected, runner.preprocess, max(1, len(selected))))
    return batch


def _images_and_targets(measurement: PipelineMeasurement, spec: JobSpec) -> tuple[torch.Tensor, torch.Tensor]:
    runner = measurement.runner
    batch = job_images(measurement, spec).to(runner.model.device)
    inputs = runner.model.normalize(batch.pixels)
    with torch.no_grad():
        logits = runner.model.module(inputs)
    return inputs, reference_targets(spec.randomization.target, batch.labels, logits)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def same_job(a: JobSpec, b: JobSpec) -> bool:
    return a.model_dump(mode="json") == b.model_dump(mode="json")


def run_bench(spec: JobSpec, out: Path, with_quantus: bool = True, repeats: int = 3, *, with_loop: bool = True,
              profile: bool = False, runs: int = 1) -> dict[str, Any]:
    """Every figure of one job. The execution settings are probed once, at the first pipeline run (not in its
    time), and kept for every later run; the bare passes and both peers run with the same torch threads.
    ``runs``: side-by-side runs of the pipeline and each peer, in turn; medians are reported."""
    full = measure_pipeline(spec, str(out / "full"), profile=profile)
    with intra_op_threads(full.runner.settings.threads):
        report = _pipeline_figures(spec, full, repeats)
        if profile:
            report["profile"] = profile_figures(full)
        if with_loop:
            loop = loop_figures(spec, full, out, max(1, runs))
            if loop is not None:
                report["plain_loop"] = loop
        if with_quantus and quantus_version():
            quantus = quantus_figures(spec, full, out, max(1, runs))
            if quantus is not None:
                report["quantus"] = quantus
    return report


def _pipeline_figures(spec: JobSpec, full: PipelineMeasurement, repeats: int) -> dict[str, Any]:
    device = full.runner.model.device
    shape = (3, spec.dataset.crop, spec.dataset.crop)
    module = full.runner.model.module
    methods = full.runner.evaluator.methods
    bare, per_call = bare_seconds(full.runner.model, full.calls, shape, methods, repeats)
    bare_plain, _ = bare_seconds(full.runner.model, full.calls, shape, methods, repeats, plain=True)
    forward_flops, forward_backward_flops = pass_flops(module, shape, device)
    recorded = full.recorded
    flops = full.images * (recorded.forward_backward * forward_backward_flops + recorded.forward_only * forward_flops)
    execution = full.execution
    return {
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
        "execution": {
            "settings": full.runner.settings.as_dict(),
            "chosen_by": dict(execution.chosen_by),
            "described": execution.describe(),
            "probe_seconds": (execution.probe or {}).get("seconds", 0.0),
            "predicted_seconds_per_image": (execution.probe or {}).get("predicted_seconds_per_image", {}),
        },
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


def profile_figures(full: PipelineMeasurement) -> dict[str, Any]:
    parts = full.profile or {}
    profiled = sum(parts.values())
    return {
        "seconds": parts,
        "calls": full.profile_calls or {},
        "profiled_seconds": profiled,
        "pipeline_seconds": full.seconds,
    }


def pipeline_tables(measurement: PipelineMeasurement) -> tuple[Any, Any]:
    store = OutputStore(measurement.out)
    return read_table(store, "randomization").to_pandas(), read_table(store, "occlusion").to_pandas()


def loop_figures(spec: JobSpec, full: PipelineMeasurement, out: Path, runs: int) -> dict[str, Any] | None:
    """The plain loop next to the pipeline on the same job and images, ``runs`` times in turn.

    Its outputs are checked row by row against the pipeline's in the loop's own memory layout (torch's
    default) and with its BatchNorms: one more pipeline run when the timed one is channels-last or folds
    BatchNorms for the occlusion forwards. A layout changes the float
    rounding of every convolution, and a randomized deep network's maps amplify it (measured: SSIM
    values 1e-8 apart in the same layout, up to 1e-3 apart across layouts on ResNet-34 at 64 px), so
    the same-work check is made where rounding is the same; the difference to the timed run is
    reported next to it."""
    job = loop_spec(spec)
    if job is None:
        return None
    settings = full.runner.settings
    ours_seconds: list[float] = []
    loop_seconds: list[float] = []
    agreement = timed_difference = None
    for run in range(runs):
        if run == 0 and same_job(job, spec) and full.profile is None:  # a profiled run's time has the spans in it
            ours = full
        else:
            ours = measure_pipeline(job, str(out / f"loop-ours-{run}"), settings=settings)
        runner = ours.runner
        images = job_images(ours, job)
        loop = PlainLoop(job, runner.model, runner.plan, runner.evaluator.methods)
        result = loop.run(images.image_ids, images.pixels, images.labels, out / f"loop-{run}")
        ours_seconds.append(ours.seconds)
        loop_seconds.append(result.seconds)
        if agreement is None:
            check = ours
            if settings.channels_last or settings.fold_batchnorm:  # the loop's layout, its BatchNorms unfolded
                check = measure_pipeline(job, str(out / "loop-check"),
                                         settings=replace(settings, channels_last=False, fold_batchnorm=False))
                timed_difference = compare_outputs(result, *pipeline_tables(ours)).max_difference
            agreement = compare_outputs(result, *pipeline_tables(check))
    return {
        "methods": result.methods,
        "model_states": result.states,
        "images": result.images,
        "ours_seconds": ours_seconds,
        "loop_seconds": loop_seconds,
        "ours_median": median(ours_seconds),
        "loop_median": median(loop_seconds),
        "speedup": median(loop_seconds) / median(ours_seconds),
        "speedup_per_run": [b / a for a, b in zip(ours_seconds, loop_seconds)],
        "agreement": agreement.as_dict(),
        "timed_run_max_difference": timed_difference,  # None: the timed run was in the loop's layout
        "note": "the same job on the same images and model states: Captum (gradient family, guided backprop), zennit "
                "(LRP), skimage SSIM per image, the occlusion steps of an image and method as one batch, default "
                "memory layout; outputs compared row by row with the pipeline's in that layout",
    }


def quantus_figures(spec: JobSpec, full: PipelineMeasurement, out: Path, runs: int) -> dict[str, Any] | None:
    comparison = comparison_spec(spec)
    if comparison is None:
        return None
    module = full.runner.model.module
    device = full.runner.model.device
    ours_units: list[float] = []
    theirs_units: dict[str, list[float]] = {}
    for run in range(runs):
        ours = measure_pipeline(comparison, str(out / f"comparison-{run}"), settings=full.runner.settings)
        inputs, targets = _images_and_targets(ours, comparison)
        theirs = measure_quantus(module, inputs, targets, [m.name for m in comparison.methods], device)
        ours_units.append(ours.seconds / (ours.images * ours.states * len(ours.methods)))
        for method in theirs.seconds:
            theirs_units.setdefault(method, []).append(theirs.per_unit(method))
    ours_unit = median(ours_units)
    per_method = {method: median(values) for method, values in theirs_units.items()}
    theirs_unit = sum(per_method.values()) / len(per_method)
    return {
        "version": theirs.version,
        "model_states": theirs.states,
        "ours_model_states": ours.states,
        "images": ours.images,
        "runs": runs,
        "seconds_per_image_state_method": {
            method: {"ours": ours_unit, "quantus": value, "speedup": value / ours_unit} for method, value in per_method.items()
        },
        "all_methods": {"ours": ours_unit, "quantus": theirs_unit, "speedup": theirs_unit / ours_unit},
        "ours_per_run": ours_units,
        "quantus_per_run": theirs_units,
        "note": "ours: one job explaining every state with all methods (gradient and gradient x input share "
        "one pass), its time split evenly over the methods; same images, methods and SSIM; each tool over "
        "its own layer list; medians over the runs",
    }


def format_report(report: dict[str, Any]) -> str:
    execution = report["execution"]
    rows = [
        ("device", f"{report['device']} ({report['torch_threads']} threads)"),
        ("model / input", f"{report['model']} / {report['image_size']}x{report['image_size']}"),
        ("execution", execution["described"]),
        ("images × model states", f"{report['images']} × {report['model_states']}"),
        ("randomizations per batch", f"{report['randomizations_per_batch']:g} (one per randomized model state, "
                                     f"{report['batches']} batches)"),
        ("methods", ", ".join(report["methods"])),
        ("passes per image (expected)", "{forward_backward} fwd+bwd, {forward} fwd".format(**report["passes_per_image_expected"])
         + (f" (without {', '.join(report['methods_not_counted_in_advance'])}: passes not known in advance)"
            if report.get("methods_not_counted_in_advance") else "")),
        ("passes per image (recorded)", "{forward_backward} fwd+bwd, {forward} fwd".format(**report["passes_per_image_recorded"])),
        ("bottom forward reused", f"in {report['replayed_passes_per_image']} of the fwd+bwd passes per image"),
        ("pipeline time", f"{report['pipeline_seconds']:.2f} s (the execution probe not included: "
                          f"{execution['probe_seconds']:.1f} s, once per run)"),
        ("bare passes time", f"{report['bare_seconds']:.2f} s"),
        ("pipeline / bare", f"{report['pipeline_over_bare']:.3f}"),
        ("bare, plain autograd", f"{report['bare_plain_seconds']:.2f} s (every backward without LRP / guided rules)"),
        ("images/s", f"{report['images_per_second']:.3f}"),
        ("achieved", f"{report['achieved_tflops']:.3f} TFLOP/s"),
        ("peak memory", f"{report['peak_memory_bytes'] / 2**30:.2f} GiB"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{name:<{width}}  {value}" for name, value in rows]
    if "profile" in report:
        lines += ["", *format_profile(report["profile"])]
    loop = report.get("plain_loop")
    if loop:
        agreement = loop["agreement"]
        checked = ", ".join(f"{rows} {table} rows (max |difference| {agreement['max_difference'][table]:.1e})"
                            for table, rows in agreement["rows"].items())
        verdict = "the same numbers" if agreement["equal"] else "DIFFERENT numbers (see the JSON figures)"
        lines += [
            "",
            f"the plain loop (Captum, zennit, skimage; {loop['images']} images × {loop['model_states']} states × "
            f"{len(loop['methods'])} methods), {len(loop['loop_seconds'])} run(s) each, medians:",
            f"  pipeline {loop['ours_median']:.2f} s, plain loop {loop['loop_median']:.2f} s: {loop['speedup']:.2f}x",
            f"  outputs checked: {checked}: {verdict} (tolerance {agreement['tolerance']:g})",
        ]
        if loop.get("timed_run_max_difference"):
            largest = max(loop["timed_run_max_difference"].values())
            lines.append(f"  (checked against a run in the loop's memory layout and BatchNorms; the timed run differs "
                         f"by up to {largest:.1e}: another float rounding, amplified by the randomized network)")
    quantus = report.get("quantus")
    if quantus:
        lines.append("")
        lines.append(f"per image × model state × method (ours: {quantus['ours_model_states']} states; "
                     f"Quantus {quantus['version']} MPRT: {quantus['model_states']} states; {quantus['images']} images, "
                     f"median of {quantus['runs']} run(s))")
        lines.append(f"{'method':<18} {'ours s':>10} {'quantus s':>10} {'speedup':>8}")
        rows = {**quantus["seconds_per_image_state_method"], "all (mean)": quantus["all_methods"]}
        for method, row in rows.items():
            lines.append(f"{method:<18} {row['ours']:>10.4f} {row['quantus']:>10.4f} {row['speedup']:>7.2f}x")
    else:
        lines.append("(Quantus not installed: no side-by-side figures; pip install quantus)")
    return "\n".join(lines)


def format_profile(profile: dict[str, Any]) -> list[str]:
    total = profile["pipeline_seconds"]
    lines = [f"where the pipeline's {total:.2f} s go (exclusive times; calls)"]
    for part, seconds in profile["seconds"].items():
        calls = profile["calls"].get(part)
        lines.append(f"  {seconds:9.3f} s {100 * seconds / total:5.1f} %  {'' if calls is None else calls:>6}  {part}")
    lines.append(f"  {profile['profiled_seconds']:9.3f} s {100 * profile['profiled_seconds'] / total:5.1f} %          "
                 "all parts (the rest of the pipeline time: warm-up bookkeeping between shards)")
    return lines
