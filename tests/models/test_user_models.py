"""Models beyond the paper's five: torchvision builders, timm models, factories in a file or a module."""

from __future__ import annotations

import shutil
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision

from benchmark.config import validate_job
from benchmark.models import WeightsUnavailable, load_model, plan_for
from benchmark.models.randomization.plan import WEIGHT_LAYERS

EXAMPLES = Path(__file__).resolve().parents[2] / "jobs" / "examples"


def job(model: dict, **sections) -> dict:
    return {
        "name": "t",
        "model": model,
        "dataset": {"kind": "synthetic", "synthetic_images": 2, "crop": 32},
        "methods": [{"name": "gradient"}],
        "runtime": {"device": "cpu"},
        **sections,
    }


def weight_layers(module: torch.nn.Module) -> list[str]:
    return [name for name, layer in module.named_modules() if isinstance(layer, WEIGHT_LAYERS)]


def test_torchvision_builder_with_the_generic_rule() -> None:
    spec = validate_job(job({"name": "torchvision:resnet18", "weights": "random", "num_classes": 10}))
    model = load_model(spec)
    assert isinstance(model.module, torchvision.models.ResNet) and model.module.fc.out_features == 10
    assert model.family == "resnet" and model.definition.source == "torchvision"  # zennit's ResNet canonizer applies
    plan = plan_for(spec, model.module, model.definition)
    layers = weight_layers(model.module)
    # generic: head = the last Linear, then one stage per weight layer, top down, all the way
    assert [stage.modules for stage in plan.stages] == [(name,) for name in reversed(layers)]
    assert plan.rule["head"] == "fc" and plan.rule["boundary"] == ".*" and plan.rule["max_boundaries"] is None
    assert plan.describe()["rule"]["from"] == {"head": "generic", "boundary": "generic", "every": "generic",
                                               "max_boundaries": "generic"}


def test_the_job_rule_wins_and_is_recorded() -> None:
    spec = validate_job(job({"name": "torchvision:resnet18", "weights": "random"},
                            randomization={"boundary": r"\.conv1$", "max_boundaries": 2}))
    model = load_model(spec)
    plan = plan_for(spec, model.module, model.definition)
    assert [s.modules[-1] for s in plan.stages] == ["fc", "layer4.1.conv1", "layer4.0.conv1"]
    assert plan.rule["from"] == {"head": "generic", "boundary": "job", "every": "generic", "max_boundaries": "job"}


def test_builtin_models_keep_their_paper_rule() -> None:
    spec = validate_job(job({"name": "resnet34", "weights": "random"}))
    model = load_model(spec)
    plan = plan_for(spec, model.module, model.definition)
    assert len(plan.stages) == 17 and plan.rule["boundary"] == r"\.conv1$"
    assert plan.rule["from"]["head"] == "default of resnet34"


def test_factory_in_a_file_gets_kwargs_and_num_classes(tmp_path) -> None:
    shutil.copy(EXAMPLES / "tiny_net.py", tmp_path / "tiny_net.py")
    spec = validate_job(job({"name": f"{tmp_path}/tiny_net.py:build", "kwargs": {"width": 4}, "num_classes": 7}))
    model = load_model(spec)
    assert model.module.classifier.out_features == 7 and model.module.features[0].out_channels == 4
    assert model.weights_source == "random (factory's own initialisation, seed 0)"
    again = load_model(spec)  # a pure function of weights_seed
    assert all(torch.equal(a, b) for a, b in zip(model.module.state_dict().values(), again.module.state_dict().values()))
    plan = plan_for(spec, model.module, model.definition)
    assert plan.stages[0].modules == ("classifier",) and len(plan.stages) == 3


def test_factory_output_must_match_the_class_count(tmp_path) -> None:
    shutil.copy(EXAMPLES / "tiny_net.py", tmp_path / "tiny_net.py")
    (tmp_path / "fixed.py").write_text(
        "import torch\n\ndef build():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))\n"
    )
    with pytest.raises(ValueError, match=r"returns \(1, 10\) for one image; the job expects logits of shape \(1, 1000\)"):
        load_model(validate_job(job({"name": f"{tmp_path}/fixed.py:build"})))
    with pytest.raises(ValueError, match="does not exist"):
        load_model(validate_job(job({"name": f"{tmp_path}/missing.py:build"})))
    with pytest.raises(ValueError, match="has no 'make'; callables there: TinyNet, build"):
        load_model(validate_job(job({"name": f"{tmp_path}/tiny_net.py:make"})))
    with pytest.raises(ValueError, match=r"building .* with model.kwargs \{'depth': 3\} failed: TypeError"):
        load_model(validate_job(job({"name": f"{tmp_path}/tiny_net.py:build", "kwargs": {"depth": 3}})))


def test_factory_in_a_package_of_the_working_directory(tmp_path, monkeypatch) -> None:
    package = tmp_path / "mynets"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(EXAMPLES / "tiny_net.py", package / "small.py")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    try:
        model = load_model(validate_job(job({"name": "mynets.small:TinyNet", "kwargs": {"width": 2}, "num_classes": 3})))
        assert type(model.module).__module__ == "mynets.small" and model.module.classifier.out_features == 3
    finally:
        for name in [n for n in sys.modules if n == "mynets" or n.startswith("mynets.")]:
            del sys.modules[name]


def test_library_classes_are_factories_too() -> None:
    """A module reference into an installed library: torchvision's ViT class with a tiny configuration."""
    kwargs = {"image_size": 32, "patch_size": 16, "num_layers": 1, "num_heads": 2, "hidden_dim": 8, "mlp_dim": 16}
    spec = validate_job(job({"name": "torchvision.models.vision_transformer:VisionTransformer", "kwargs": kwargs,
                             "num_classes": 5}))
    model = load_model(spec)
    plan = plan_for(spec, model.module, model.definition)
    assert plan.stages[0].modules == ("heads.head",)
    assert any("never randomized: class_token, encoder.pos_embedding" in note for note in plan.notes)


def test_input_statistics_of_the_weights_and_of_the_job() -> None:
    model = load_model(validate_job(job({"name": "torchvision:resnet18", "weights": "random"})))
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    model = load_model(validate_job(job({"name": "torchvision:resnet18", "weights": "random",
                                         "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]})))
    pixels = torch.ones(1, 3, 2, 2)
    assert torch.allclose(model.normalize(pixels), torch.full_like(pixels, 2.0))
    weights = torchvision.models.get_model_weights("vit_b_16").DEFAULT
    from benchmark.models.sources import torchvision_statistics

    assert torchvision_statistics("vit_b_16", "imagenet") == (tuple(weights.transforms().mean), tuple(weights.transforms().std))


def test_offline_torchvision_weights_name_the_cache_file(tmp_path, monkeypatch) -> None:
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    spec = validate_job(job({"name": "torchvision:resnet18", "weights": "imagenet"}))
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    with pytest.raises(WeightsUnavailable) as error:
        load_model(spec)
    expected = tmp_path / "torch-home" / "hub" / "checkpoints" / Path(url).name
    assert str(expected) in str(error.value) and "--set model.weights=random" in str(error.value)


def test_pretrained_weights_with_a_new_head_are_loaded_except_the_head(tmp_path, monkeypatch) -> None:
    """'imagenet' through torchvision's weights API (its cache holds the file), head re-initialised."""
    reference = torchvision.models.resnet18(weights=None)
    url = torchvision.models.ResNet18_Weights.DEFAULT.url
    target = tmp_path / "hub" / "checkpoints" / Path(url).name
    target.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), target)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    model = load_model(validate_job(job({"name": "torchvision:resnet18", "weights": "imagenet", "num_classes": 4})))
    assert torch.equal(model.module.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    assert model.module.fc.out_features == 4 and "head 'fc' re-initialised for 4 classes" in model.weights_source


def test_timm_model(monkeypatch) -> None:
    timm = pytest.importorskip("timm")
    spec = validate_job(job({"name": "timm:resnet18", "weights": "random", "num_classes": 10}))
    model = load_model(spec)
    assert isinstance(model.module, timm.models.ResNet) and model.definition.source == "timm"
    assert plan_for(spec, model.module, model.definition).stages[0].modules == ("fc",)  # timm's classifier
    from benchmark.models.registry import define_model

    vit = define_model(validate_job(job({"name": "timm:vit_tiny_patch16_224", "weights": "random"})).model)
    assert vit.mean == (0.5, 0.5, 0.5) and vit.std == (0.5, 0.5, 0.5)  # timm's pretrained_cfg

    def offline(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("We couldn't connect to 'https://huggingface.co'")
        return original(name, pretrained=pretrained, **kwargs)

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(WeightsUnavailable) as error:
        load_model(validate_job(job({"name": "timm:resnet18", "weights": "imagenet", "num_classes": 10})))
    message = str(error.value)
    assert "timm/resnet18.a1_in1k" in message and "models--timm--resnet18.a1_in1k" in message
    assert "--set model.weights=random" in message
