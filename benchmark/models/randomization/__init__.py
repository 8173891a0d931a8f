"""Randomization plans (which modules, in which stages) and the in-place randomizer."""

from .plan import RandomizationPlan, Stage, build_plan, randomizable_layers
from .randomizer import Randomizer, derive_seed, he_normal

__all__ = ["RandomizationPlan", "Randomizer", "Stage", "build_plan", "derive_seed", "he_normal", "randomizable_layers"]
