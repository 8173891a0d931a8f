"""`benchmark bench`: the pass accounting is exact and the figures are consistent."""

from __future__ import annotations

import json
import re

import pytest

from benchmark.bench import run_bench
from benchmark.bench.accounting import occlusion_forwards
from benchmark.bench.pipeline import measure_pipeline
from benchmark.cli.main import main
from benchmark.config import validate_job

from ..engine.jobs import TINY, write_job

JOB = {
    **TINY,
    "methods": [
        {"name": "gradient"}, {"name": "gradient_x_input"}, {"name": "integrated_gradients", "steps": 3},
        {"name": "guided_backprop"}, {"name": "lrp", "composite": "epsilon_plus_flat"}, {"name": "noise"},
    ],
    "randomization": {"seeds": [0, 1], "max_boundaries": 1, "target": "own_prediction"},
    "occlusion": {"kernels": [8, 16], "steps": 6},
}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    return run_bench(validate_job(JOB), tmp_path_factory.mktemp("bench"), with_quantus=False, repeats=1, profile=True)


def test_recorded_passes_equal_the_analytic_count(report) -> None:
    states = 1 + 2 * 2  # the trained model + 2 seeds x 2 stages
    # gradient and gradient x input share one pass; IG 3; guided backprop 1; LRP 1; noise none
    assert report["passes_per_image_expected"]["forward_backward"] == states * (1 + 3 + 1 + 1)
    # the reference forward, one per randomized state (own_prediction), occlusion:
    # 32 px: k=8 -> 16 tiles (6 steps), k=16 -> 4 tiles (4 steps, then flat); f0 once per kernel
    assert report["passes_per_image_expected"]["forward"] == 1 + 4 + (1 + 6 * 6) + (1 + 6 * 4)
    assert report["passes_per_image_recorded"] == report["passes_per_image_expected"]


def test_passes_under_backward_rules_are_replayed_with_those_rules(report) -> None:
    states = 1 + 2 * 2
    # the recorder knows which method's rules (zennit hooks) were on the model during each pass
    assert report["backward_passes_per_image_by_rules"] == {
        "guided_backprop": states, "lrp_epsilon_plus_flat": states, "plain": states * (1 + 3),
    }
    kinds = " ".join(report["bare_call_seconds"])
    assert "(guided_backprop rules)" in kinds and "(lrp_epsilon_plus_flat rules)" in kinds
    assert report["bare_plain_seconds"] > 0


def test_passes_that_replay_the_trained_bottom_are_counted_and_timed_as_such(report) -> None:
    # the plain pass (gradient) records at stage 0 and replays in seed 0's stages 1 and 2; seed 1
    # restarts from the trained model, so its stage 1 records afresh and its stage 2 replays; guided
    # backprop and LRP, their rules attached lean, record and replay the same way under their rules
    assert report["replayed_passes_per_image"] == 3 * 3
    replayed = {kind.split("replayed: ")[1].rstrip(")") for kind in report["bare_call_seconds"] if "replayed: " in kind}
    # one set per stage: stage 1 replays all of layer4 (only fc is randomized), stage 2 stops before layer4.2
    assert replayed == {
        "avgpool, bn1, conv1, layer1, layer2, layer3, layer4, maxpool, relu",
        "bn1, conv1, layer1, layer2, layer3, layer4.0, layer4.1, maxpool, relu",
    }


def test_figures_are_consistent(report) -> None:
    assert report["images"] == 5 and report["model_states"] == 5
    assert report["pipeline_seconds"] > 0 and report["bare_seconds"] > 0
    assert report["pipeline_over_bare"] == pytest.approx(report["pipeline_seconds"] / report["bare_seconds"])
    assert report["images_per_second"] == pytest.approx(5 / report["pipeline_seconds"])
    assert report["achieved_tflops"] > 0 and report["peak_memory_bytes"] > 0


# Every experiment that looks at randomized states at once: each used to randomize and explain on its own.
EVERY_EXPERIMENT = {
    **JOB,
    "activations": {"enabled": True},
    "logits": {"enabled": True},
    "skip_path": {"enabled": True, "block": "layer4.1"},
    "kept_activation_explanation": {"enabled": True, "layer": "layer4.0"},
    "runtime": {**TINY["runtime"], "save_maps": 2},
}


def test_one_randomization_per_state_and_batch_whatever_the_experiments(tmp_path) -> None:
    measured = measure_pipeline(validate_job(EVERY_EXPERIMENT), str(tmp_path / "out"))
    assert measured.batches == 3 and measured.states == 5  # shards of 2, 2, 1 images; trained + 2 seeds x 2 stages
    # one per (seed, stage) state: the check, logits, skip path, kept features and saved maps share it
    # (each of the four walking the plan on its own made 16)
    assert measured.randomizations_per_batch == 4
    # and share the state's forward pass and maps: what the walk and the experiments declare is all that ran
    states = 5
    methods = 1 + 3 + 1 + 1  # gradient (shared with x input), IG 3, guided backprop, LRP
    skip_path, kept = 2 * states, 1  # skip and residual part of the LRP method per state; kept layer once
    assert measured.expected.forward_backward == states * methods + skip_path + kept
    # trained forward, one forward per randomized state (own_prediction and the logits share it), occlusion
    assert measured.expected.forward_only == 1 + 4 + (1 + 6 * 6) + (1 + 6 * 4)
    assert measured.recorded == measured.expected


def test_occlusion_forwards_skip_flat_steps() -> None:
    spec = validate_job({**JOB, "occlusion": {"kernels": [15], "steps": 30}, "dataset": {**TINY["dataset"], "crop": 224}})
    assert occlusion_forwards(spec, methods=5, image_size=224) == 1 + 5 * 30  # 15x15 tiles: 225 >= 30
    assert occlusion_forwards(spec, methods=5, image_size=40) == 1 + 5 * 9  # 3x3 tiles only


def test_the_plain_loop_does_the_same_work_to_float_tolerance(report) -> None:
    """Captum, zennit and skimage on the same images, states and targets (own prediction, two seeds) give
    the pipeline's numbers: every randomization row (3 metrics x 2 normalizations x signed/absolute) and
    every occlusion curve of every method."""
    loop = report["plain_loop"]
    agreement = loop["agreement"]
    states, methods, images = 1 + 2 * 2, 6, 5
    comparisons = 3 * 2 * 2
    assert agreement["rows"] == {"randomization": images * (states - 1) * methods * comparisons,
                                 "occlusion": images * methods * 2}
    assert agreement["missing"] == {"randomization": 0, "occlusion": 0}
    assert agreement["equal"] and max(agreement["max_difference"].values()) <= agreement["tolerance"]
    assert loop["methods"] == report["methods"] and loop["model_states"] == states
    assert loop["speedup"] == pytest.approx(loop["loop_median"] / loop["ours_median"])
    # the timed run is channels-last: checked against a run in the loop's layout, the timed run's gap reported
    assert report["execution"]["settings"]["channels_last"]
    assert set(loop["timed_run_max_difference"]) == {"randomization", "occlusion"}


def test_the_equality_check_catches_a_loop_that_computes_something_else(report, tmp_path) -> None:
    from benchmark.bench.plain_loop import LoopResult, compare_outputs

    import pandas as pd

    rows = pd.DataFrame([("img", "gradient", 0, 1, "ssim", "none", False, 0.5)],
                        columns=["image_id", "method", "seed", "stage", "metric", "normalization", "absolute", "value"])
    ours = rows.assign(value=0.5 + 1e-3)
    occlusion = pd.DataFrame({"image_id": ["img"], "method": ["gradient"], "kernel": [8], "curve": [[0.1, 0.2]],
                              "logit_curve": [[1.0, 2.0]]})
    loop = LoopResult(1.0, 1, 2, ["gradient"], rows, occlusion)
    assert not compare_outputs(loop, ours, occlusion).equal  # a difference of 1e-3 in one value
    assert compare_outputs(loop, rows, occlusion).equal
    assert not compare_outputs(loop, rows.iloc[:0], occlusion).equal  # a row the pipeline does not have


def test_the_profile_names_every_part_and_adds_up(report) -> None:
    profile = report["profile"]
    parts, calls = profile["seconds"], profile["calls"]
    assert sum(parts.values()) == pytest.approx(profile["profiled_seconds"])
    assert profile["profiled_seconds"] >= profile["pipeline_seconds"] > 0
    assert all(seconds >= 0 for seconds in parts.values())
    # every kind of pass, counted per call (5 images in batches of 2, 2, 1; 5 states; chunk >= 2 inputs)
    states, batches = 5, 3
    assert calls["passes: forward+backward under lrp_epsilon_plus_flat rules"] == states * batches
    assert calls["passes: forward+backward under guided_backprop rules"] == states * batches
    # the plain gradient: recorded at stage 0 and for seed 1's first stage, replayed in the 3 other stages
    assert calls["passes: forward+backward, bottom replayed"] == states * batches
    assert calls["passes: forward (state logits)"] == states * batches  # own_prediction: every state's forward
    for part in ("passes: forward+backward, plain", "passes: forward (occlusion)", "metrics",
                 "occlusion bookkeeping (blur, tile ranks, occluded inputs, curves)", "tables (device to host, Arrow)",
                 "randomization (stages applied and restored)", "host transfers (images to the device)",
                 "writing (Parquet, commit)", "loading images (waiting for the decoder)", "other"):
        assert part in parts, part
    assert calls["writing (Parquet, commit)"] == 3  # one commit per shard
    assert calls["metrics"] == states * batches


def test_the_tuned_settings_are_reported(report) -> None:
    execution = report["execution"]
    assert set(execution["settings"]) == {"chunk_size", "channels_last", "threads", "reuse_bottom_forward", "precision",
                                          "fold_batchnorm"}
    assert execution["chosen_by"]["chunk_size"] == "runtime"  # TINY pins it (tests compare runs bitwise)
    assert execution["chosen_by"]["reuse_bottom_forward"] == "probe"
    assert execution["described"].startswith(f"chunk {execution['settings']['chunk_size']},")


def test_both_orders_and_imputers_are_declared_and_counted(tmp_path) -> None:
    both = {"kernels": [8, 16], "steps": 6, "orders": ["mif", "lif"], "imputers": ["blur", "mean"]}
    spec = validate_job({**JOB, "occlusion": both})
    assert occlusion_forwards(spec, methods=6, image_size=32) == (1 + 4 * 6 * 6) + (1 + 4 * 6 * 4)  # 16 px: 4 tiles
    job = {**JOB, "occlusion": both, "randomization": {"seeds": [0], "max_boundaries": 0},
           "methods": [{"name": "gradient"}, {"name": "noise"}]}
    measured = measure_pipeline(validate_job(job), str(tmp_path / "out"))
    # the trained forward and occlusion; the randomized state's logits come from its gradient pass
    assert measured.expected.forward_only == 1 + (1 + 4 * 2 * 6) + (1 + 4 * 2 * 4)
    assert measured.recorded == measured.expected


def test_cli_prints_and_writes_json(tmp_path, capsys) -> None:
    job = write_job(tmp_path, {**JOB, "methods": [{"name": "gradient"}], "randomization": {"max_boundaries": 0}})
    assert main(["bench", str(job), "--images", "2", "--no-quantus", "--repeats", "1", "--json", str(tmp_path / "b.json")]) == 0
    printed = capsys.readouterr().out
    assert "pipeline / bare" in printed and "passes per image (recorded)" in printed
    assert re.search(r"execution +chunk 8, channels-last layout, 1 thread", printed)
    assert "the plain loop (Captum, zennit, skimage" in printed and "the same numbers" in printed
    assert re.search(r"randomizations per batch +1 \(one per randomized model state, 1 batches\)", printed)
    figures = json.loads((tmp_path / "b.json").read_text())
    assert figures["images"] == 2 and figures["model_states"] == 2 and figures["randomizations_per_batch"] == 1
    assert figures["plain_loop"]["agreement"]["equal"]


def test_cli_grid(tmp_path, capsys) -> None:
    job = write_job(tmp_path, {**JOB, "methods": [{"name": "gradient"}], "randomization": {"max_boundaries": 0},
                               "occlusion": {"enabled": False}})
    assert main(["bench", str(job), "--grid", "--models", "resnet34", "--sizes", "32", "--images", "1",
                 "--json", str(tmp_path / "g.json")]) == 0
    printed = capsys.readouterr().out
    assert "default/best" in printed and "resnet34" in printed
    (cell,) = json.loads((tmp_path / "g.json").read_text())
    grid = {f"{chunk}/{layout}" for chunk in (8, 16, 32, 64) for layout in ("channels_last", "contiguous")}
    assert set(cell["median_seconds"]) == {"default"} | grid  # the probed default and every grid setting
    assert cell["best"] in grid and cell["default_over_best"] == pytest.approx(
        cell["median_seconds"]["default"] / cell["median_seconds"][cell["best"]])
    assert cell["default_label"] == "8/channels_last"  # TINY pins chunk and layout: the default is a grid point
    assert cell["default_is_grid_point"] and cell["seconds"]["default"] == cell["seconds"]["8/channels_last"]


# The repaired checks: sMPRT's copies, the random-logit test's other class, the §5 refinements' own passes.
REPAIRED_CHECKS = {
    **TINY,
    "methods": [
        {"name": "gradient"}, {"name": "gradient_x_input"}, {"name": "integrated_gradients", "steps": 3},
        {"name": "lrp", "composite": "epsilon_plus_flat"}, {"name": "noise"},
    ],
    "randomization": {"seeds": [0, 1], "max_boundaries": 2},
    "occlusion": {"enabled": False},
    "smprt": {"enabled": True, "samples": 3},
    "emprt": {"enabled": True},
    "random_logit": {"enabled": True},
    "mprt_invariant_mask": {"enabled": True},
    "mprt_non_baseline": {"enabled": True},
}


def test_the_repaired_checks_passes_are_declared_and_counted(tmp_path) -> None:
    measured = measure_pipeline(validate_job(REPAIRED_CHECKS), str(tmp_path / "out"))
    states = 1 + 2 * 3  # trained + 2 seeds x 3 stages (fc, layer4.2.conv1, layer4.1.conv1)
    assert measured.states == states and measured.randomizations_per_batch == 6
    per_state = 1 + 3 + 1  # gradient (shared with x input), IG 3, LRP; noise none
    shared_maps = states * per_state  # the randomization check's maps; eMPRT reads the same ones
    smprt = 3 * per_state * states  # 3 copies of every image through every method in every state
    random_logit = per_state  # every method's map of the other class, trained model only
    invariant_mask = 3  # the kept part's explanation at fc's, layer4.2.conv1's and layer4.1.conv1's input
    non_baseline = 1 * (2 + 2 * 2)  # the LRP method's residual branch: trained at 2 blocks, 2 seeds x 2 stages
    assert measured.expected.forward_backward == shared_maps + smprt + random_logit + invariant_mask + non_baseline
    assert measured.expected.forward_only == 1  # the trained forward; the sign flips read each gradient pass's logits
    assert measured.recorded == measured.expected


def test_the_quantus_comparison_times_mprt_alone() -> None:
    from benchmark.bench.run import comparison_spec

    spec = validate_job(REPAIRED_CHECKS)
    comparison = comparison_spec(spec)
    assert [m.name for m in comparison.methods] == ["gradient", "gradient_x_input"]
    assert not comparison.section("smprt").enabled and not comparison.section("mprt_non_baseline").enabled
    assert spec.section("smprt").enabled  # the job itself is untouched
