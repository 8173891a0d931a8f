"""Models of the paper (DESIGN §3): building, weights, randomization plans and the randomizer."""

from dataclasses import replace

from .bundle import ModelBundle, WeightsUnavailable, build_module, load_model, resolve_device
from .randomization import RandomizationPlan, Randomizer, build_plan
from .randomization.plan import WEIGHT_LAYERS, classifier_head, unrandomized_parameters
from .registry import MODEL_SOURCES, MODELS, ModelDef, define_model, model_def, register_model_source
from ..config.spec import JobSpec

GENERIC_BOUNDARY = r".*"  # every weight layer ends a stage


def plan_for(spec: JobSpec, module, definition: ModelDef | None = None) -> RandomizationPlan:
    """The spec's randomization plan: the job's rule where it gives one, else the model's built-in
    default (the paper's), else the generic rule (head = the last Linear, one stage per weight
    layer, top down). The rule and where each value came from are recorded in ``plan.rule``."""
    r = spec.randomization
    definition = definition or define_model(spec.model)
    defaults = definition.randomization
    default_from = f"default of {definition.name}" if defaults is not None else "generic"
    if defaults is not None:
        head, boundary, every, most = defaults.head, defaults.boundary, defaults.every, defaults.max_boundaries
    else:
        layers = {name for name, layer in module.named_modules() if isinstance(layer, WEIGHT_LAYERS)}
        named_head = definition.head if definition.head in layers else None
        head, boundary, every, most = named_head or classifier_head(module), GENERIC_BOUNDARY, 1, None
        if named_head:
            default_from = f"{definition.source} classifier"
    chosen = {
        "head": (r.head, head),
        "boundary": (r.boundary, boundary),
        "every": (r.every, every),
        "max_boundaries": (r.max_boundaries, most),
    }
    rule = {key: job if job is not None else default for key, (job, default) in chosen.items()}
    plan = build_plan(
        module,
        mode=r.mode,
        reset_batchnorm=r.reset_batchnorm,
        split_after=r.split_after,
        layers=r.layers,
        **rule,
    )
    rule["from"] = {key: "job" if job is not None else default_from for key, (job, _) in chosen.items()}
    notes = plan.notes
    if not definition.builtin:
        untouched = unrandomized_parameters(module)
        if untouched:
            listed = ", ".join(untouched[:8]) + (f", … ({len(untouched)} in all)" if len(untouched) > 8 else "")
            notes = (*notes, f"parameters outside Conv/Linear/normalization modules are never randomized: {listed}")
    return replace(plan, rule=rule, notes=notes)


__all__ = [
    "MODELS", "MODEL_SOURCES", "ModelBundle", "ModelDef", "RandomizationPlan", "Randomizer", "WeightsUnavailable",
    "build_module", "build_plan", "classifier_head", "define_model", "load_model", "model_def", "plan_for",
    "register_model_source", "resolve_device",
]
