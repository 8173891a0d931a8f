"""The job spec reads the registries: registering one object is all it takes, and errors list what is registered."""

from __future__ import annotations

import pytest

from benchmark.attribution.base import METHODS, register_method
from benchmark.attribution.gradient import Gradient
from benchmark.attribution.lrp import COMPOSITES, register_composite
from benchmark.config import SpecError, validate_job
from benchmark.config.spec import GradientSpec
from benchmark.models.registry import MODELS, ModelDef

MINIMAL = {
    "name": "t",
    "model": {"name": "resnet50", "weights": "random"},
    "dataset": {"kind": "synthetic"},
    "methods": [{"name": "gradient"}],
}


def problems(data: dict) -> str:
    with pytest.raises(SpecError) as error:
        validate_job(data)
    return str(error.value)


def test_unknown_model_lists_the_registered_names_and_the_patterns() -> None:
    message = problems({**MINIMAL, "model": {"name": "resnet51"}})
    assert (
        "model.name: Input should be 'resnet50', 'resnet34', 'vgg16', 'densenet121', 'efficientnet-b0' or 'tiny-resnet', or "
        "'torchvision:<builder>', 'timm:<model>', '<file.py>:<function>' or '<package.module>:<function>' "
        "(got 'resnet51')"
    ) in message


def test_registering_a_model_is_all_it_takes(monkeypatch) -> None:
    definition = ModelDef("mynet", "generic", lambda n, s: None, None, None)
    monkeypatch.setitem(MODELS, "mynet", definition)
    assert validate_job({**MINIMAL, "model": {"name": "mynet"}}).model.name == "mynet"
    assert "'mynet'" in problems({**MINIMAL, "model": {"name": "mynet2"}})


def test_torchvision_and_timm_names_are_checked_against_the_libraries() -> None:
    assert validate_job({**MINIMAL, "model": {"name": "torchvision:convnext_tiny"}}).model.weights == "imagenet"
    message = problems({**MINIMAL, "model": {"name": "torchvision:resnet19"}})
    assert "model.name: torchvision has no classification builder 'resnet19'; close: resnet18" in message
    assert "(got 'torchvision:resnet19')" in message
    pytest.importorskip("timm")
    assert validate_job({**MINIMAL, "model": {"name": "timm:resnet50"}}).model.model_id == "timm-resnet50"
    assert "timm has no model 'resnet5O'; close: resnet50" in problems({**MINIMAL, "model": {"name": "timm:resnet5O"}})


def test_factory_models_are_syntax_checked_only_and_take_no_library_weights() -> None:
    spec = validate_job({**MINIMAL, "model": {"name": "nets/tiny_net.py:build", "kwargs": {"width": 4}}})
    assert spec.model.weights == "random" and spec.model.kwargs == {"width": 4}  # the factory's own initialisation
    assert spec.model.model_id == "tiny_net-build"
    assert validate_job({**MINIMAL, "model": {"name": "mypkg.nets:Net"}}).model.model_id == "mypkg.nets-Net"
    message = problems({**MINIMAL, "model": {"name": "nets/tiny_net.py:build", "weights": "imagenet"}})
    assert "model.weights: a factory model takes 'random'" in message and "(got 'imagenet')" in message
    assert "model.kwargs: the built-in model 'resnet50' takes no keyword arguments" in problems(
        {**MINIMAL, "model": {"name": "resnet50", "kwargs": {"x": 1}}}
    )


def test_model_ids_are_folder_names() -> None:
    assert validate_job({**MINIMAL, "model": {"name": "torchvision:resnet18"}}).model.model_id == "torchvision-resnet18"
    assert validate_job({**MINIMAL, "model": {"name": "resnet50", "label": "r50-ft"}}).model.model_id == "r50-ft"
    assert "letters, digits" in problems({**MINIMAL, "model": {"name": "resnet50", "label": "a/b"}})


def test_input_statistics_are_checked() -> None:
    spec = validate_job({**MINIMAL, "model": {"name": "resnet50", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}})
    assert spec.model.mean == [0.5, 0.5, 0.5]
    assert "std must be positive" in problems({**MINIMAL, "model": {"name": "resnet50", "std": [0.5, 0, 0.5]}})
    assert "model.std: has 2 values" in problems({**MINIMAL, "model": {"name": "resnet50", "mean": [0.1] * 3, "std": [1, 1]}})


def test_unknown_method_lists_registered_methods_and_patterns() -> None:
    message = problems({**MINIMAL, "methods": [{"name": "gradient"}, {"name": "deeplift"}]})
    assert (
        "methods.1.name: unknown method; allowed: 'gradient', 'gradient_x_input', 'integrated_gradients', "
        "'smoothgrad', 'guided_backprop', 'lrp', 'noise', 'captum:<AttributionClass>', '<module>:<function>' or "
        "'<file.py>:<function>' (got 'deeplift')"
    ) in message
    assert "methods.0.name: required key is missing" in problems({**MINIMAL, "methods": [{"steps": 3}]})


def test_registering_a_method_is_all_it_takes(monkeypatch) -> None:
    class MySpec(GradientSpec):
        name: str = "my_gradient"  # type: ignore[assignment]

    class MyGradient(Gradient):
        pass

    monkeypatch.setitem(METHODS, "my_gradient", MyGradient)
    register_method("my_gradient", MySpec)(MyGradient)
    spec = validate_job({**MINIMAL, "methods": [{"name": "my_gradient", "label": "mine"}]})
    assert type(spec.methods[0]) is MySpec and spec.methods[0].method_id == "mine"
    assert "'my_gradient'" in problems({**MINIMAL, "methods": [{"name": "nope"}]})


def test_method_keys_errors_name_the_method_kind_keys() -> None:
    assert "methods.0.stepz: unknown key; allowed keys: baseline, label, name, reduction, rule, steps" in problems(
        {**MINIMAL, "methods": [{"name": "integrated_gradients", "stepz": 3}]}
    )
    assert "methods.0.argz: unknown key; allowed keys: args, label, name, reduction, upsample" in problems(
        {**MINIMAL, "methods": [{"name": "captum:Saliency", "argz": {}}]}
    )
    assert "methods.0.arrays: Input should be 'torch' or 'numpy' (got 'jax')" in problems(
        {**MINIMAL, "methods": [{"name": "mypkg.explain:fn", "arrays": "jax"}]}
    )


def test_method_ids_of_library_and_user_methods() -> None:
    spec = validate_job({**MINIMAL, "methods": [
        {"name": "captum:Saliency", "args": {"abs": False}},
        {"name": "mypkg.explain:my_method"},
        {"name": "tools/explain.py:smooth", "label": "smooth-8"},
    ]})
    assert [m.method_id for m in spec.methods] == ["captum:Saliency", "my_method", "smooth-8"]
    dumped = spec.model_dump(mode="json")["methods"]  # subclass fields survive (the manifest, the spec hash)
    assert dumped[0]["args"] == {"abs": False} and dumped[1]["arrays"] == "torch"
    assert "distinct 'label'" in problems({**MINIMAL, "methods": [{"name": "a.b:f"}, {"name": "c.d:f"}]})


def test_lrp_composites_come_from_their_registry(monkeypatch) -> None:
    message = problems({**MINIMAL, "methods": [{"name": "lrp", "composite": "epsilonn"}]})
    assert (
        "methods.0.composite: Input should be 'epsilon', 'zplus', 'alpha2beta1', 'gamma', 'epsilon_plus_flat', "
        "'epsilon_gamma_box', 'adaptive_beta' or 'vgg_paper' (got 'epsilonn')"
    ) in message
    monkeypatch.setitem(COMPOSITES, "mine", COMPOSITES["epsilon"])
    register_composite("mine")(COMPOSITES["epsilon"])
    assert validate_job({**MINIMAL, "methods": [{"name": "lrp", "composite": "mine"}]}).methods[0].method_id == "lrp_mine"
