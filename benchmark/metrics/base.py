"""A similarity metric of the randomization check as one registered object (DESIGN §5).

A ``Metric`` is a ``Score`` (name, direction, label) that also knows how to compare two batches of
2-D maps and what an uncorrelated pair would score (its noise bound, or none). It is registered by
name, like the attribution methods, and everything else reads the registry: the job spec's
``metrics.similarities`` accepts exactly the registered names, ``MapComparer`` computes them,
aggregation ranks by their direction, plots and the report label them.

A metric compares a reference (the stage-0 maps, ``prepare``d once per batch) with each stage's
maps; ``configured`` binds the job's settings (SSIM's window and constants) once per worker::

    @dataclass(frozen=True)
    class Cosine(Metric):
        def compare(self, reference, prepared, maps):
            return F.cosine_similarity(reference.flatten(1), maps.flatten(1)), None

    register_metric(Cosine("cosine", "cosine similarity", better="lower"))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from torch import Tensor

from .scores import Score, register_score, unregister_score

if TYPE_CHECKING:
    from ..config.spec import MetricsSpec


@dataclass(frozen=True)
class NoiseBound:
    """What a pair of uncorrelated maps (σ_AB = 0) would score, per pair (supplement B, D)."""

    label: str  # "Theorem 1 bound"
    formula: str  # as printed in captions: "C2/(σA²+σB²+C2)"
    computation: str  # how it is computed, for the run's metadata


@dataclass(frozen=True)
class Metric(Score):
    """A similarity (or distance) per image [N] of maps [N, H, W]; ``bound`` None: no per-pair bound."""

    bound: NoiseBound | None = None
    default: bool = False  # computed when a job does not list ``metrics.similarities``
    paper_figures: tuple[tuple[str, str], ...] = ()  # (dataset or '*', figure tag) of the paper's plots of it

    def configured(self, spec: "MetricsSpec") -> "Metric":
        """This metric with the job's settings bound (default: it has none)."""
        return self

    def prepare(self, maps: Tensor) -> Any:
        """What the metric needs of one side alone, computed once for the stage-0 reference."""
        return None

    def compare(self, reference: Tensor, prepared: Any, maps: Tensor) -> tuple[Tensor, Tensor | None]:
        """Values [N] of ``maps`` against the prepared reference, and the noise bound [N] (None: none)."""
        raise NotImplementedError(f"metric '{self.name}' does not implement compare")

    def compare_masked(self, reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
        """Values [N] of ``maps`` against ``reference`` on the pixels of ``mask`` [N, H, W] (bool) only
        (``benchmark.metrics.masked``; the maps are already normalized over the mask)."""
        raise NotImplementedError(f"metric '{self.name}' has no masked version (Metric.compare_masked)")

    @property
    def masked(self) -> bool:
        """Whether the metric can compare maps on a mask of pixels (``compare_masked``)."""
        return type(self).compare_masked is not Metric.compare_masked

    def settings(self) -> dict[str, object]:
        """The settings that shape its numbers, for the run's metadata (JSON-serializable)."""
        return {}

    def paper_figure(self, dataset: str) -> str | None:
        """The tag of the paper figure that plots this metric on ``dataset`` (None: no such figure)."""
        figures = dict(self.paper_figures)
        return figures.get(dataset, figures.get("*"))


METRICS: dict[str, Metric] = {}

M = TypeVar("M", bound=Metric)


def register_metric(metric: M) -> M:
    """Make ``metric`` computable by name (``metrics.similarities``) and rankable (a score)."""
    register_score(metric)
    METRICS[metric.name] = metric
    return metric


def unregister_metric(name: str) -> None:
    METRICS.pop(name, None)
    unregister_score(name)


def metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise ValueError(f"unknown similarity '{name}'; registered: {', '.join(METRICS)}") from None


def default_metrics() -> list[str]:
    """The similarities of a job that names none: the paper's."""
    return [name for name, m in METRICS.items() if m.default]


# The paper's headline comparison (Fig. 2, and the rank agreement reported first) uses SSIM.
HEADLINE = "ssim"
