"""Job-spec sections of the repaired randomization checks (docs/repaired-checks.md).

Each is a top-level section of a job, off by default, validated with the job like the paper's
sections (unknown keys and bad values are reported with their key path); a job without them has
the same spec hash as before they existed. The experiments that read them are in
``benchmark.experiments`` (``smooth_mprt``, ``efficient_mprt``, ``random_logit``, ``invariant_mask``,
``non_baseline``).

    smprt:               {enabled: true, samples: 50, noise_magnitude: 0.1, seed: 0}
    emprt:               {enabled: true, n_bins: 100}          # or sturges, sqrt, rice, scott, freedman_diaconis
    random_logit:        {enabled: true, seed: 0}
    mprt_invariant_mask: {enabled: true, explainer: null, tolerance: 0.0}
    mprt_non_baseline:   {enabled: true}
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Union, get_args

from pydantic import Field, field_validator, model_validator

from .spec import ExperimentSection, register_section

if TYPE_CHECKING:
    from .spec import JobSpec

BinRule = Literal["sturges", "sqrt", "rice", "scott", "freedman_diaconis"]


def _lrp_ids(spec: "JobSpec") -> list[str]:
    return [method.method_id for method in spec.methods if method.name == "lrp"]


class SmoothMPRTSpec(ExperimentSection):
    """Smooth MPRT (Hedström et al. 2023; Quantus ``SmoothMPRT``): in every model state each method's
    explanation is the mean over ``samples`` noisy copies of the input, the last copy noise-free."""

    samples: int = Field(50, ge=1, description="Copies of each input averaged per explanation (N; the last is noise-free).")
    noise_magnitude: float = Field(
        0.1, ge=0, description="Noise std as a fraction of each image's max - min, in the model's (normalized) input space."
    )
    seed: int = Field(0, description="Noise seed: the noise is a pure function of (image id, copy, seed), the same in every state.")

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        if self.enabled and not spec.randomization.enabled:
            return [("enabled", "sMPRT compares randomized models' explanations: it needs randomization.enabled")]
        return []


class EfficientMPRTSpec(ExperimentSection):
    """Efficient MPRT (Hedström et al. 2023; Quantus ``EfficientMPRT``): the relative rise of the
    histogram entropy of each map from the trained to the fully randomized model."""

    n_bins: Union[int, str] = Field(
        100,
        description="Histogram bins: a number, or a rule of numpy.histogram_bin_edges computed from the map's number of "
        "elements (sturges, sqrt, rice; scott and freedman_diaconis also from its spread), evaluated on the trained "
        "model's map and used for both maps of an image.",
    )
    min_bins: int = Field(10, ge=1, description="A rule's bin count is raised to at least this (Quantus' default).")
    max_bins: int = Field(200, ge=1, description="A rule's bin count is cut to at most this (Quantus' default).")

    @field_validator("n_bins", mode="before")
    @classmethod
    def _number_or_rule(cls, value: object) -> int | str:
        rules = get_args(BinRule)
        if isinstance(value, str) and value in rules:
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 2:
                raise ValueError(f"at least 2 bins are needed (one bin has no entropy)")
            return value
        raise ValueError(f"expected a number of bins (2 or more) or one of {', '.join(rules)}")

    @model_validator(mode="after")
    def _bins(self) -> "EfficientMPRTSpec":
        if self.min_bins > self.max_bins:
            raise ValueError(f"min_bins ({self.min_bins}) is larger than max_bins ({self.max_bins})")
        return self

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        randomization = spec.randomization
        if self.enabled and (not randomization.enabled or randomization.mode != "top_down"):
            return [("enabled", "eMPRT compares the trained with the fully randomized model, the last stage of a "
                                f"cascading top-down plan: it needs randomization.mode top_down (got "
                                f"{randomization.mode if randomization.enabled else 'randomization disabled'})")]
        return []


class RandomLogitSpec(ExperimentSection):
    """Random-logit test (Sixt et al. 2020): the trained model's map of the target against its map of
    another class, drawn per image."""

    seed: int = Field(0, description="Seed of the other class: a pure function of (image id, seed), never the target.")

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        if self.enabled and spec.num_classes() < 2:
            return [("enabled", f"the random-logit test needs another class: the model has {spec.num_classes()}")]
        return []


class InvariantMaskSpec(ExperimentSection):
    """The paper's §5 refinement (1): compare maps only on the input positions the kept (unrandomized)
    part of the model responds to (non-zero LRP relevance of its output activations)."""

    explainer: str | None = Field(
        None, description="The LRP method (its id in methods) whose relevance of the kept layer's activations defines "
        "the mask; default the job's first LRP method.",
    )
    tolerance: float = Field(
        0.0, ge=0, lt=1, description="A pixel is kept when its |relevance| (max over channels) exceeds tolerance x the "
        "image's largest; 0: any non-zero relevance (the paper's words).",
    )

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        if not self.enabled:
            return []
        lrp = _lrp_ids(spec)
        if not spec.randomization.enabled:
            return [("enabled", "the masked check compares randomized models' maps: it needs randomization.enabled")]
        if not lrp:
            return [("explainer", "the mask is an LRP explanation of the kept layer's activations: add an lrp method")]
        if self.explainer is not None and self.explainer not in lrp:
            return [("explainer", f"'{self.explainer}' is not an LRP method of this job; LRP methods: {', '.join(lrp)}")]
        return []


class NonBaselineSpec(ExperimentSection):
    """The paper's §5 refinement (2): compare only the relevance through the randomized residual branch
    of the stage's block, without what passes its skip connection (LRP methods, residual networks)."""

    def check_job(self, spec: "JobSpec") -> list[tuple[str, str]]:
        if not self.enabled:
            return []
        if not spec.randomization.enabled:
            return [("enabled", "the non-baseline check compares randomized models' maps: it needs randomization.enabled")]
        if not _lrp_ids(spec):
            return [("enabled", "the skip/residual split is an LRP rule: add an lrp method to methods")]
        return []


SECTIONS = {
    "smprt": SmoothMPRTSpec,
    "emprt": EfficientMPRTSpec,
    "random_logit": RandomLogitSpec,
    "mprt_invariant_mask": InvariantMaskSpec,
    "mprt_non_baseline": NonBaselineSpec,
}
for _name, _section in SECTIONS.items():
    register_section(_name, _section)
