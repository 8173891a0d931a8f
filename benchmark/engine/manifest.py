"""``manifest.json``: what a run is (spec, its hash, versions, plans) and the resume check."""

from __future__ import annotations

import platform
import time
import uuid
from importlib import metadata
from typing import Any

from ..config import JobSpec, science_dict, spec_differences, spec_hash
from ..results.schema import SCHEMA_VERSION, check_version

LIBRARIES = (
    "benchmark", "torch", "torchvision", "zennit", "efficientnet_pytorch", "numpy", "scikit-image",
    "pyarrow", "ray", "pydantic", "duckdb",
)


class ResumeRefused(RuntimeError):
    """The output folder holds a run of a different spec."""


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def new_manifest(
    spec: JobSpec, previous: dict[str, Any] | None = None, run_id: str | None = None, **sections: Any
) -> dict[str, Any]:
    now = time.time()
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": (previous or {}).get("run_id") or run_id or uuid.uuid4().hex[:12],
        "name": spec.name,
        "spec": spec.model_dump(mode="json"),
        "science": science_dict(spec),
        "spec_hash": spec_hash(spec),
        "created_at": (previous or {}).get("created_at", now),
        "updated_at": now,
        "versions": library_versions(),
        "host": platform.node(),
        "seeds": list(spec.randomization.seeds),
        "precision": spec.runtime.precision,
        "threads": spec.runtime.threads,
        "attempts": (previous or {}).get("attempts", 0) + 1,
        **sections,
    }


def check_resume(previous: dict[str, Any], spec: JobSpec) -> None:
    """Refuse to mix results of two different specs, or of two schema versions, in one output."""
    check_version(previous.get("schema_version"), "the output's manifest.json", previous.get("versions", {}).get("benchmark"))
    if previous.get("spec_hash") == spec_hash(spec):
        return
    changes = spec_differences(previous.get("science", {}), science_dict(spec))
    listing = "\n  ".join(changes[:20]) or "(the spec hash differs)"
    raise ResumeRefused(
        f"the output already holds run '{previous.get('name')}' with spec hash {previous.get('spec_hash')}; "
        f"this spec ({spec_hash(spec)}) differs:\n  {listing}\n"
        "Resume it with the original spec, choose another --out, or pass --new-run to discard the old results."
    )
