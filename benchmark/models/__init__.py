"""Models of the paper (DESIGN §3): building, weights, randomization plans and the randomizer."""

from .bundle import ModelBundle, WeightsUnavailable, build_module, load_model, resolve_device
from .randomization import RandomizationPlan, Randomizer, build_plan
from .registry import MODELS, ModelDef, model_def
from ..config.spec import JobSpec


def plan_for(spec: JobSpec, module) -> RandomizationPlan:
    """The spec's randomization plan, with the model's paper defaults where the spec is silent."""
    r = spec.randomization
    defaults = model_def(spec.model.name).randomization
    return build_plan(
        module,
        mode=r.mode,
        head=r.head or defaults.head,
        boundary=r.boundary or defaults.boundary,
        every=r.every or defaults.every,
        max_boundaries=r.max_boundaries if r.max_boundaries is not None else defaults.max_boundaries,
        reset_batchnorm=r.reset_batchnorm,
        split_after=r.split_after,
        layers=r.layers,
    )


__all__ = [
    "MODELS", "ModelBundle", "ModelDef", "RandomizationPlan", "Randomizer", "WeightsUnavailable",
    "build_module", "build_plan", "load_model", "model_def", "plan_for", "resolve_device",
]
