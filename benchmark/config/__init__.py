"""Typed, validated job specs (DESIGN §2–7): load a YAML job, apply overrides, hash it."""

from . import repaired_checks  # noqa: F401  (registers the repaired checks' sections)
from .load import SpecError, load_job, science_dict, spec_differences, spec_hash, validate_job
from .spec import JobSpec

__all__ = ["JobSpec", "SpecError", "load_job", "science_dict", "spec_differences", "spec_hash", "validate_job"]
