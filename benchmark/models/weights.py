"""Loading weights: the libraries' pretrained weights through their own caches, a local file, or random.

Offline, a missing pretrained file is an error that names the file, the cache path where it
belongs and the ``--set model.weights=random`` escape hatch. Nothing falls back silently.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.error import URLError
from urllib.parse import urlparse

import torch
from torch import nn

from .registry import ModelDef


class WeightsUnavailable(RuntimeError):
    """Pretrained weights could not be loaded (offline, missing or mismatching file)."""


def cache_path_for(url: str) -> Path:
    """Where torch.hub keeps (or would keep) the file downloaded from ``url``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def _offline_error(model: str, url: str, error: BaseException) -> WeightsUnavailable:
    target = cache_path_for(url)
    return WeightsUnavailable(
        f"pretrained weights for '{model}' are not available: {target} is missing and downloading "
        f"{url} failed ({error}).\n"
        f"  Put the file {target.name} at {target} (or set TORCH_HOME to a folder holding "
        f"hub/checkpoints/{target.name}), or pass a local file with --set model.weights=/path/to/state_dict.pt,\n"
        f"  or run the pipeline untrained with --set model.weights=random."
    )


def pretrained_state_dict(definition: ModelDef, weights_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """The pretrained state dict (the library's own head) and a description (its URL) for the manifest."""
    if definition.source == "timm":
        return timm_state_dict(definition.name.partition(":")[2], weights_name)
    if definition.source == "factory":
        raise WeightsUnavailable(f"{definition.name}: a factory has no library weights; use 'random' or a state-dict file")
    if not definition.pretrained:
        raise WeightsUnavailable(
            f"{definition.name} has no pretrained library weights ('{weights_name}'); use model.weights "
            f"'{definition.default_weights}', 'random' or the path of a state-dict file"
        )
    if definition.family == "efficientnet":
        from efficientnet_pytorch.utils import url_map

        url = url_map[definition.default_weights if weights_name == "imagenet" else weights_name]
        try:
            state = torch.hub.load_state_dict_from_url(url, progress=False, check_hash=False)
        except (URLError, OSError, RuntimeError) as error:
            raise _offline_error(definition.name, url, error) from None
        return state, url

    enum_name = definition.default_weights if weights_name == "imagenet" else weights_name
    builder = definition.torchvision_builder
    assert builder is not None
    try:
        weights = torchvision_weights(builder, enum_name)
    except KeyError:
        raise WeightsUnavailable(f"'{enum_name}' is not a torchvision weights name of {builder}") from None
    try:
        # The torchvision builder applies the per-model key fixes (DenseNet's old 'norm.1' names).
        pretrained = getattr(__import__("torchvision").models, builder)(weights=weights, progress=False)
    except (URLError, OSError) as error:
        raise _offline_error(definition.name, weights.url, error) from None
    return pretrained.state_dict(), weights.url


def timm_state_dict(name: str, weights_name: str) -> tuple[dict[str, torch.Tensor], str]:
    """timm's pretrained weights through its own cache (Hugging Face hub or torch hub)."""
    from .sources import require_timm, timm_name

    timm = require_timm()
    full_name = timm_name(name, weights_name)
    config = timm.get_pretrained_cfg(full_name)
    if config is None:
        raise WeightsUnavailable(f"timm has no pretrained weights '{full_name}' (timm.list_pretrained('{name}*') lists them)")
    where = config.hf_hub_id or config.url or full_name
    try:
        model = timm.create_model(full_name, pretrained=True)
    except Exception as error:  # hub and network errors come in many types
        if config.hf_hub_id:
            from huggingface_hub.constants import HF_HUB_CACHE

            target = Path(HF_HUB_CACHE) / f"models--{config.hf_hub_id.replace('/', '--')}"
            put = f"the Hugging Face hub repository {config.hf_hub_id} is not in timm's cache {target}"
        else:
            target = cache_path_for(config.url)
            put = f"{target} is missing"
        raise WeightsUnavailable(
            f"pretrained weights for 'timm:{full_name}' are not available: {put}, and downloading them failed "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}).\n"
            f"  Download them where the network is reachable (timm.create_model('{full_name}', pretrained=True)) and copy "
            f"{target} here (HF_HOME / TORCH_HOME select the caches), or pass a local file with "
            "--set model.weights=/path/to/state_dict.pt,\n  or run the pipeline untrained with --set model.weights=random."
        ) from None
    return model.state_dict(), f"timm {where}"


def torchvision_weights(builder: str, enum_name: str):
    import torchvision

    return torchvision.models.get_model_weights(builder)[enum_name]


def state_dict_from_file(path: str) -> dict[str, torch.Tensor]:
    """A state dict from a file saved by torch.save: plain, or inside a checkpoint dict."""
    file = Path(path)
    if not file.is_file():
        raise WeightsUnavailable(
            f"model.weights: file {file} does not exist (expected 'imagenet', 'random', a torchvision "
            "weights name, or the path of a state-dict file)"
        )
    try:
        payload = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for unreadable files
        raise WeightsUnavailable(f"model.weights: cannot read {file}: {error}") from None
    if isinstance(payload, dict):
        for key in ("model_state_dict", "state_dict", "model"):
            if key in payload and isinstance(payload[key], dict):
                payload = payload[key]
                break
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise WeightsUnavailable(f"model.weights: {file} does not hold a state dict of tensors")
    return {key.removeprefix("module."): value for key, value in payload.items()}


def load_into(module: nn.Module, state: dict[str, torch.Tensor], source: str, skip_prefix: str | None = None) -> None:
    """Load ``state`` strictly, except for the head when ``skip_prefix`` names it (new class count)."""
    if skip_prefix is not None:
        state = {k: v for k, v in state.items() if not k.startswith(skip_prefix + ".")}
    expected = module.state_dict()
    for key, value in state.items():
        if key in expected and expected[key].shape != value.shape:
            raise WeightsUnavailable(
                f"{source}: {key} has shape {tuple(value.shape)}, the architecture expects {tuple(expected[key].shape)}"
            )
    missing, unexpected = module.load_state_dict(state, strict=False)
    if skip_prefix is not None:
        missing = [k for k in missing if not k.startswith(skip_prefix + ".")]
    if missing or unexpected:
        raise WeightsUnavailable(
            f"{source} does not match the architecture: missing keys {missing[:5]}"
            f"{'…' if len(missing) > 5 else ''}, unexpected keys {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}"
        )
