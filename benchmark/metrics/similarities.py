"""The paper's similarity metrics as registered ``Metric`` objects: SSIM, MSE, Spearman (DESIGN §5).

Each one shares the work of the reference side (``prepare``: SSIM's local statistics, the moments
for MSE's bound, the centred ranks) across every stage of a batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from torch import Tensor

from .base import Metric, NoiseBound, register_metric
from .bounds import MapMoments, map_moments, mse_bound_from_moments, ssim_bound_from_stats
from .distances import mse
from .masked import masked_mse, masked_spearman, masked_ssim
from .ranks import RankProfile, rank_profile, spearman_from_profiles
from .ssim import DataRange, LocalStats, SSIMWindow, local_stats, pair_stats, resolve_data_range, ssim_from_stats

if TYPE_CHECKING:
    from ..config.spec import MetricsSpec


@dataclass(frozen=True)
class SSIM(Metric):
    """skimage's 2-D SSIM, batched, with the Theorem 1 bound on the same windows."""

    window: SSIMWindow = field(default_factory=lambda: SSIMWindow(win_size=7))
    k1: float = 0.01
    k2: float = 0.03
    data_range: DataRange = "joint"

    def configured(self, spec: "MetricsSpec") -> "SSIM":
        s = spec.ssim
        window = SSIMWindow(s.win_size, s.gaussian_weights, s.sigma, s.truncate, s.use_sample_covariance)
        return replace(self, window=window, k1=s.k1, k2=s.k2, data_range=s.data_range)

    def prepare(self, maps: Tensor) -> LocalStats:
        return local_stats(maps, self.window)

    def compare(self, reference: Tensor, prepared: LocalStats, maps: Tensor) -> tuple[Tensor, Tensor]:
        stats = pair_stats(reference, maps, self.window, a_stats=prepared)
        data_range = resolve_data_range(reference, maps, self.data_range)
        return (
            ssim_from_stats(stats, data_range, self.k1, self.k2),
            ssim_bound_from_stats(stats.a, stats.b, data_range, self.k2),
        )

    def compare_masked(self, reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
        return masked_ssim(reference, maps, mask, self.window, self.data_range, self.k1, self.k2)

    def settings(self) -> dict[str, object]:
        return {
            "reference": "skimage.metrics.structural_similarity (2-D, mean over cropped windows)",
            **self.window.settings(),
            "k1": self.k1,
            "k2": self.k2,
            "data_range": self.data_range,
            "data_range_zero_fallback": "joint range of the pair, then 1.0",
        }


@dataclass(frozen=True)
class MSE(Metric):
    """Mean squared error over pixels, with the Theorem 4 bound of the maps as compared."""

    def prepare(self, maps: Tensor) -> MapMoments:
        return map_moments(maps)

    def compare(self, reference: Tensor, prepared: MapMoments, maps: Tensor) -> tuple[Tensor, Tensor]:
        return mse(reference, maps), mse_bound_from_moments(prepared, map_moments(maps))

    def compare_masked(self, reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
        return masked_mse(reference, maps, mask)

    def settings(self) -> dict[str, object]:
        return {"reduction": "mean over pixels"}


@dataclass(frozen=True)
class Spearman(Metric):
    """Spearman rank correlation with average ranks for ties; Theorem 3's bound is the constant 0."""

    def prepare(self, maps: Tensor) -> RankProfile:
        return rank_profile(maps)

    def compare(self, reference: Tensor, prepared: RankProfile, maps: Tensor) -> tuple[Tensor, None]:
        return spearman_from_profiles(prepared, rank_profile(maps)), None

    def compare_masked(self, reference: Tensor, maps: Tensor, mask: Tensor) -> Tensor:
        return masked_spearman(reference, maps, mask)

    def settings(self) -> dict[str, object]:
        return {"ties": "average", "constant_map": "nan", "reference": "scipy.stats.spearmanr"}


SSIM_METRIC = register_metric(SSIM(
    "ssim", "SSIM", "lower", default=True,
    bound=NoiseBound(
        "Theorem 1 bound", "C2/(σA²+σB²+C2)",
        "Theorem 1: mean over SSIM's windows of C2/(var_A+var_B+C2), same filter, crop and data_range",
    ),
    paper_figures=(("coco", "supp-fig6"), ("*", "paper-fig2-supp-fig4")),
))
MSE_METRIC = register_metric(MSE(
    "mse", "MSE", "higher", default=True,
    bound=NoiseBound(
        "Theorem 4 bound", "2-2μAμB/(√E[A²]√E[B²])",
        "Theorem 4: mean(A^2)+mean(B^2)-2*mean(A)*mean(B) of the compared maps (eq. 15; eq. 19 unnormalized)",
    ),
    paper_figures=(("*", "supp-fig5"),),
))
SPEARMAN_METRIC = register_metric(Spearman("spearman", "Spearman rank correlation", "lower", short="Spearman", default=True))
