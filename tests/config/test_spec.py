"""Job spec validation: errors name the key path and the allowed values, before any work."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from benchmark.config import SpecError, load_job, spec_differences, spec_hash, science_dict, validate_job

JOBS = Path(__file__).resolve().parents[2] / "jobs"

MINIMAL = {
    "name": "t",
    "model": {"name": "resnet50", "weights": "random"},
    "dataset": {"kind": "synthetic"},
    "methods": [{"name": "gradient"}],
}


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


SHIPPED_JOBS = sorted(JOBS.glob("*.yaml")) + sorted(JOBS.glob("paper/**/*.yaml"))


@pytest.mark.parametrize("job", SHIPPED_JOBS, ids=lambda p: str(p.relative_to(JOBS)))
def test_every_shipped_job_validates(job: Path) -> None:
    spec = load_job(job)
    assert spec.name


def test_defaults_are_the_papers() -> None:
    spec = validate_job(MINIMAL)
    assert spec.metrics.normalizations == ["second_moment", "max_abs", "none"]
    assert spec.occlusion.kernels == [15, 8] and spec.occlusion.steps == 30 and spec.occlusion.blur_kernel == 15
    assert spec.metrics.ssim.k1 == 0.01 and spec.metrics.ssim.k2 == 0.03 and spec.metrics.ssim.win_size == 7
    assert spec.randomization.mode == "top_down" and spec.randomization.target == "label"
    lrp = validate_job({**MINIMAL, "methods": [{"name": "lrp"}]}).methods[0]
    assert lrp.output_relevance == "one" and lrp.method_id == "lrp_epsilon_plus_flat"  # DESIGN §4
    # execution settings are decided per run by a probe (benchmark/models/tuning.py); unprobed, one thread
    assert spec.runtime.threads == spec.runtime.chunk_size == spec.runtime.channels_last == "auto"
    from benchmark.models.tuning import fallback_settings

    assert fallback_settings(spec.runtime, "cpu").threads == 1


def test_the_testbed_weights_need_the_tiny_resnet_on_ten_classes() -> None:
    digits = {**MINIMAL, "model": {"name": "tiny-resnet", "weights": "testbed"}, "dataset": {"kind": "digits"}}
    spec = validate_job(digits)
    assert spec.num_classes() == 10 and spec.dataset.crop == 32  # the digits' own size unless set
    assert validate_job({**digits, "dataset": {"kind": "digits", "crop": 64}}).dataset.crop == 64
    with pytest.raises(SpecError, match="model.weights 'testbed' is the tiny-resnet trained on the 10 digit classes"):
        validate_job({**digits, "model": {"name": "resnet50", "weights": "testbed"}})
    with pytest.raises(SpecError, match="got tiny-resnet with 1000 classes"):
        validate_job({**digits, "dataset": {"kind": "synthetic"}})
    with pytest.raises(SpecError, match="the digits dataset has splits val and train, not 'test'"):
        validate_job({**digits, "dataset": {"kind": "digits", "split": "test"}})


def test_unknown_model_names_allowed_values(tmp_path: Path) -> None:
    data = {**MINIMAL, "model": {"name": "resnet51"}}
    with pytest.raises(SpecError) as error:
        load_job(write(tmp_path, data))
    message = str(error.value)
    assert "model.name" in message and "resnet50" in message and "efficientnet-b0" in message
    assert str(tmp_path / "job.yaml") in message


def test_unknown_method_names_allowed_methods() -> None:
    data = {**MINIMAL, "methods": [{"name": "gradient"}, {"name": "deeplift"}]}
    with pytest.raises(SpecError) as error:
        validate_job(data)
    message = str(error.value)
    assert "methods.1" in message and "deeplift" in message and "integrated_gradients" in message


def test_unknown_key_lists_allowed_keys() -> None:
    data = {**MINIMAL, "methods": [{"name": "integrated_gradients", "stepz": 3}]}
    with pytest.raises(SpecError) as error:
        validate_job(data)
    message = str(error.value)
    assert "methods.0.stepz: unknown key" in message and "steps" in message


def test_wrong_type_names_key_and_value() -> None:
    data = {**MINIMAL, "occlusion": {"kernels": ["big"]}}
    with pytest.raises(SpecError) as error:
        validate_job(data)
    assert "occlusion.kernels.0" in str(error.value) and "'big'" in str(error.value)


def test_set_overrides_nested_values_and_lists(tmp_path: Path) -> None:
    path = write(tmp_path, {**MINIMAL, "methods": [{"name": "gradient"}, {"name": "integrated_gradients"}]})
    spec = load_job(path, ["model.weights=imagenet", "methods.1.steps=4", "randomization.seeds=[1, 2]", "occlusion.enabled=false"])
    assert spec.model.weights == "imagenet"
    assert spec.methods[1].steps == 4
    assert spec.randomization.seeds == [1, 2]
    assert spec.occlusion.enabled is False


def test_bad_override_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL)
    with pytest.raises(SpecError, match="methods.5"):
        load_job(path, ["methods.5.steps=3"])
    with pytest.raises(SpecError, match="expected key.path=value"):
        load_job(path, ["model.weights"])


def test_duplicate_method_ids_rejected() -> None:
    data = {**MINIMAL, "methods": [{"name": "lrp"}, {"name": "lrp"}]}
    with pytest.raises(SpecError, match="distinct 'label'"):
        validate_job(data)


def test_required_root_for_real_datasets() -> None:
    with pytest.raises(SpecError, match="dataset.root is required"):
        validate_job({**MINIMAL, "dataset": {"kind": "imagenet"}})


def test_hash_ignores_execution_settings_only() -> None:
    base = validate_job(MINIMAL)
    faster = validate_job({**MINIMAL, "runtime": {"device": "cpu", "in_flight": 3, "actors": 4}, "output": "s3://b/x"})
    other = validate_job({**MINIMAL, "randomization": {"seeds": [7]}})
    assert spec_hash(base) == spec_hash(faster)
    assert spec_hash(base) != spec_hash(other)
    assert spec_differences(science_dict(base), science_dict(other)) == ["randomization.seeds: [0] -> [7]"]


def test_paper_experiments_refuse_what_they_cannot_run() -> None:
    with pytest.raises(SpecError, match="skip_path explains with the job's LRP methods"):
        validate_job({**MINIMAL, "skip_path": {"enabled": True}})
    with pytest.raises(SpecError, match="kept_activation_explanation.layer is required"):
        validate_job({**MINIMAL, "methods": [{"name": "lrp"}], "kept_activation_explanation": {"enabled": True}})
    with pytest.raises(SpecError, match="kept_activation_explanation.enabled"):
        validate_job({**MINIMAL, "kept_activation_explanation": {"enabled": "maybe"}})
    spec = validate_job({**MINIMAL, "activations": {"enabled": True}, "logits": {"enabled": True}})
    assert spec.activations.layers is None and not spec.skip_path.enabled and spec.skip_path.block == "layer4.2"


def test_occlusion_orders_and_imputers_are_validated_with_their_key_paths() -> None:
    spec = validate_job({**MINIMAL, "occlusion": {"orders": ["mif", "lif"], "imputers": ["blur", "mean"]}})
    assert spec.occlusion.orders == ["mif", "lif"] and spec.occlusion.imputers == ["blur", "mean"]
    assert validate_job(MINIMAL).occlusion.orders == ["mif"] and validate_job(MINIMAL).occlusion.imputers == ["blur"]
    with pytest.raises(SpecError, match=r"occlusion.orders.1: Input should be 'mif' or 'lif'"):
        validate_job({**MINIMAL, "occlusion": {"orders": ["mif", "random"]}})
    with pytest.raises(SpecError, match=r"occlusion.imputers: .*distinct"):
        validate_job({**MINIMAL, "occlusion": {"imputers": ["mean", "mean"]}})
    with pytest.raises(SpecError, match=r"occlusion.imputers: .*at least 1"):
        validate_job({**MINIMAL, "occlusion": {"imputers": []}})
