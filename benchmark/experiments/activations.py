"""Activation statistics of the trained model (supplement I, J; DESIGN §7) and Cauchy overtaking probabilities.

Per image and layer, the layer's output values are pooled over space and channels ("because
usually a convolution kernel takes all channels as input", supplement I) and summarised by the 18
quantiles 0.95, 0.90, …, 0.10 and the fraction of non-positive values (supplement J, Fig. 10).
They are taken in the trained model's forward pass that every batch makes anyway (forward hooks,
no extra pass) and written to the ``activations`` table.

In aggregation the quantiles are averaged over images (``mean_quantiles``) and turned into the
probability that the small activations overtake the large ones under random weights
(``overtaking_probabilities``, Theorem 2 with supplement I's estimates).
"""

from __future__ import annotations

import math
import re
from contextlib import AbstractContextManager, contextmanager
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch import Tensor, nn

from ..config.spec import ActivationsSpec, JobSpec
from ..models.bundle import ModelBundle
from .base import Experiment, Setup, register_experiment
from .grid import axis_column, grid_index, list_column
from .state import Batch, ModelState

QUANTILES: tuple[float, ...] = tuple(round(0.95 - 0.05 * i, 2) for i in range(18))  # 0.95 … 0.10
Q_HIGH: tuple[float, ...] = (0.95, 0.90, 0.85)
Q_LOW: tuple[float, ...] = (0.50, 0.45, 0.40, 0.35, 0.30, 0.25, 0.20, 0.15, 0.10)


def _named(pattern: str) -> Callable[[nn.Module], list[str]]:
    def find(module: nn.Module) -> list[str]:
        return [name for name, _ in module.named_modules() if name and re.search(pattern, name)]

    return find


def _vgg_relus(module: nn.Module) -> list[str]:
    return [
        name for name, child in module.named_modules() if name.startswith("features.") and isinstance(child, nn.ReLU)
    ]


# The "layers" of each family: modules each called once per forward whose outputs feed convolutions.
DEFAULT_LAYERS: dict[str, Callable[[nn.Module], list[str]]] = {
    "resnet": _named(r"^layer\d+\.\d+$"),  # residual block outputs (after the block's ReLU)
    "efficientnet": _named(r"^_blocks\.\d+$"),  # MBConv block outputs (linear bottlenecks: can be negative)
    "densenet": _named(r"(\.denselayer\d+\.relu1|\.transition\d+\.relu|^final_relu)$"),  # conv inputs after ReLU
    "vgg": _vgg_relus,
}


def activation_layers(spec: ActivationsSpec, model: ModelBundle) -> list[str]:
    """The modules whose outputs are measured, in definition order."""
    if spec.layers is not None:
        names = _named(spec.layers)(model.module)
        if not names:
            raise ValueError(f"activations.layers: no module of {model.name} matches {spec.layers!r}")
        return names
    if model.family not in DEFAULT_LAYERS:
        raise ValueError(f"activations.layers: no default layers for family '{model.family}'; give a regex")
    return DEFAULT_LAYERS[model.family](model.module)


def batched_quantiles(values: Tensor, quantiles: Tensor) -> Tensor:
    """Quantiles [N, Q] of each row of ``values`` [N, M], linear interpolation (numpy's default).

    Sort-based, so rows of any length work (``torch.quantile`` refuses more than 2^24 values).
    """
    ordered = torch.sort(values, dim=1).values
    position = quantiles.double() * (values.shape[1] - 1)  # float64: exact for any realistic row length
    low = position.floor().long().to(values.device)
    high = position.ceil().long().to(values.device)
    fraction = (position - position.floor()).to(values)
    return ordered[:, low] + (ordered[:, high] - ordered[:, low]) * fraction


@register_experiment("activations")
class ActivationStatistics(Experiment):
    """Per-image quantiles and non-positive fraction of chosen layers, recorded during a forward pass."""

    tables = ("activations",)

    def __init__(self, spec: ActivationsSpec, model: ModelBundle) -> None:
        self.spec, self.model = spec, model
        self.layers = activation_layers(spec, model)
        self.quantiles = torch.tensor(QUANTILES, dtype=torch.float64)
        self._records: dict[str, tuple[Tensor, Tensor]] = {}
        self.image_ids: list[str] = []

    @classmethod
    def build(cls, setup: Setup) -> "ActivationStatistics":
        return cls(setup.spec.activations, setup.model)

    @classmethod
    def observes_randomized_states(cls, spec: JobSpec) -> bool:
        return False  # statistics of the trained model (supplement I, J)

    def trained_forward(self) -> AbstractContextManager:
        return self.capture()

    def start(self, batch: Batch) -> None:
        self.image_ids, self._records = batch.image_ids, {}

    def observe(self, state: ModelState) -> None:
        """Nothing to do: the trained forward pass was recorded (``trained_forward``)."""

    def finish(self) -> dict[str, pa.Table]:
        return {"activations": self.table(self.image_ids)}

    def _hook(self, name: str) -> Callable:
        def record(module: nn.Module, inputs: tuple, output: Tensor) -> None:
            if name in self._records:
                raise RuntimeError(
                    f"activations: module '{name}' ran twice in one forward pass; name modules used once"
                )
            values = output.detach().flatten(1).float()
            self._records[name] = (
                batched_quantiles(values, self.quantiles),
                (values <= 0).double().mean(dim=1),
            )

        return record

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the statistics of the forward passes run inside (one batch)."""
        self._records = {}
        modules = dict(self.model.module.named_modules())
        handles = [modules[name].register_forward_hook(self._hook(name)) for name in self.layers]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def table(self, image_ids: list[str]) -> pa.Table:
        """The ``activations`` rows of the forward pass ``capture`` recorded."""
        missing = [name for name in self.layers if name not in self._records]
        if missing:
            raise RuntimeError(f"activations: layers {missing} did not run in the captured forward pass")
        quantiles = torch.stack([self._records[name][0] for name in self.layers]).cpu().numpy()  # [L, N, Q]
        nonpositive = torch.stack([self._records[name][1] for name in self.layers]).cpu().numpy()  # [L, N]
        layers, images = grid_index(nonpositive.shape)
        count = layers.size
        return pa.table(
            {
                "image_id": axis_column(image_ids, images, pa.string()),
                "layer": axis_column(self.layers, layers, pa.string()),
                "layer_index": pa.array(layers.astype(np.int32)),
                "levels": list_column(np.tile(np.asarray(QUANTILES, dtype=np.float32), (count, 1))),
                "quantiles": list_column(quantiles.reshape(count, len(QUANTILES))),
                "nonpositive": pa.array(nonpositive.ravel().astype(np.float64)),
            }
        )


# --------------------------------------------------------------------------------------------
# Aggregation: mean quantiles and overtaking probabilities (supplement E, I)
# --------------------------------------------------------------------------------------------

_GROUP = ("model", "dataset", "layer", "layer_index")


def mean_quantiles(activations: pa.Table) -> pa.Table:
    """Mean over images of each quantile and of the non-positive fraction (supplement I, J), per
    (model[, dataset], layer, layer_index); rows sorted by those keys."""
    keys = [key for key in _GROUP if key in activations.column_names]
    frame = activations.select(keys + ["nonpositive"]).to_pandas()
    stacked = np.stack(activations.column("quantiles").to_numpy(zero_copy_only=False)).astype(np.float64)
    quantile_columns = [f"q{i}" for i in range(stacked.shape[1])]
    frame[quantile_columns] = stacked
    means = frame.groupby(keys, sort=True)[quantile_columns + ["nonpositive"]].mean().reset_index()
    columns = {key: pa.array(means[key].to_numpy()) for key in keys}
    columns["layer_index"] = pa.array(means["layer_index"].to_numpy().astype(np.int32))
    columns["quantiles"] = list_column(means[quantile_columns].to_numpy(), pa.float64())
    columns["nonpositive"] = pa.array(means["nonpositive"].to_numpy(), pa.float64())
    return pa.table(columns)


def overtaking_K(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """K of Theorem 2 from the quantile values V(q_h), V(q_l): larger over smaller magnitude.

    For non-negative activations this is V(q_h)/V(q_l) (supplement I); where the activations are
    negative (EfficientNet) the low quantile holds the larger magnitudes and K is the inverse
    V(q_l)/V(q_h) ("K is computed using the inverse", supplement I). Under zero-mean normal weights
    only magnitudes matter, so a sign change between the two is handled the same way. K = inf
    where the smaller magnitude is 0 (sparse ReLU layers: probability 0); NaN where both are 0.
    """
    a, b = np.abs(high), np.abs(low)
    larger, smaller = np.maximum(a, b), np.minimum(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(larger == 0, np.nan, larger / smaller)


def overtaking_gamma(q_high: np.ndarray, q_low: np.ndarray) -> np.ndarray:
    """γ = √(|X_S| / |X_L|) = √(q_l / (1 − q_h)) (supplement I)."""
    return np.sqrt(q_low / (1.0 - q_high))


def cauchy_tail(K: np.ndarray, gamma: np.ndarray) -> np.ndarray:
    """P(Z ≥ K) = 1 − CDF_Cauchy(K; γ) = 1/2 − arctan(K/γ)/π (supplement E, eq. 34-36)."""
    return 0.5 - np.arctan(K / gamma) / math.pi


def overtaking_probabilities(mean_quantiles: pa.Table) -> pa.Table:
    """Probabilities of overtaking per layer and (q_h, q_l) pair (supplement I, Figs. 7-9).

    Input: one row per layer with ``model`` (and optionally ``dataset``), ``layer``, ``layer_index``
    and ``quantiles`` (the 18 mean quantiles 0.95 … 0.10, as from ``mean_quantiles``). Output: one
    row per layer × q_h ∈ {0.95, 0.90, 0.85} × q_l ∈ {0.50, …, 0.10} with columns model[, dataset],
    layer, layer_index, q_high, q_low, K, gamma, probability.
    """
    keys = [key for key in ("model", "dataset") if key in mean_quantiles.column_names]
    values = np.stack(mean_quantiles.column("quantiles").to_numpy(zero_copy_only=False)).astype(np.float64)
    if values.shape[1] != len(QUANTILES):
        raise ValueError(f"expected {len(QUANTILES)} quantiles (0.95 … 0.10) per layer, got {values.shape[1]}")
    position = {q: i for i, q in enumerate(QUANTILES)}
    rows, highs, lows = grid_index((mean_quantiles.num_rows, len(Q_HIGH), len(Q_LOW)))
    q_high = np.asarray(Q_HIGH)[highs]
    q_low = np.asarray(Q_LOW)[lows]
    v_high = values[rows, [position[q] for q in q_high]]
    v_low = values[rows, [position[q] for q in q_low]]
    K = overtaking_K(v_high, v_low)
    gamma = overtaking_gamma(q_high, q_low)
    take = pa.array(rows, pa.int64())
    columns = {key: mean_quantiles.column(key).take(take) for key in keys + ["layer", "layer_index"]}
    columns["layer_index"] = pc.cast(columns["layer_index"], pa.int32())
    return pa.table(
        {
            **columns,
            "q_high": pa.array(q_high, pa.float64()),
            "q_low": pa.array(q_low, pa.float64()),
            "K": pa.array(K, pa.float64()),
            "gamma": pa.array(gamma, pa.float64()),
            "probability": pa.array(cauchy_tail(K, gamma), pa.float64()),
        }
    )
