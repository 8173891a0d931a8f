"""``manifest.json``: what a run is (spec, its hash, versions, plans) and the resume checks.

A resume must be the same science (``check_resume``: the spec hash, which leaves out execution
settings and where the dataset lives) on the same images (``check_same_images``: the digests of
each shard's image list recorded in the shard plan). A dataset moved to another mount point
passes both; a changed spec or image list is refused, naming what changed.
"""

from __future__ import annotations

import platform
import time
import uuid
from importlib import metadata
from typing import Any

from ..config import JobSpec, science_dict, spec_differences, spec_hash
from ..config.spec import LOCATION_KEYS
from ..results.reader import run_spec_hashes
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
    equivalent = sorted(run_spec_hashes(previous or {}) - {spec_hash(spec)})
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
        **({"equivalent_spec_hashes": equivalent} if equivalent else {}),
        **sections,
    }


def check_resume(previous: dict[str, Any], spec: JobSpec) -> None:
    """Refuse to mix results of two different specs, or of two schema versions, in one output."""
    check_version(previous.get("schema_version"), "the output's manifest.json", previous.get("versions", {}).get("benchmark"))
    if previous.get("spec_hash") == spec_hash(spec):
        return
    old = science_dict(previous["spec"]) if "spec" in previous else previous.get("science", {})
    if old == science_dict(spec):
        return  # hashed by an earlier version (with the dataset's location): the same science
    changes = spec_differences(old, science_dict(spec))
    listing = "\n  ".join(changes[:20]) or "(the spec hash differs)"
    raise ResumeRefused(
        f"the output already holds run '{previous.get('name')}' with spec hash {previous.get('spec_hash')}; "
        f"this spec ({spec_hash(spec)}) differs:\n  {listing}\n"
        "Resume it with the original spec, choose another --out, or pass --new-run to discard the old results."
    )


def _locations(spec: dict[str, Any]) -> dict[str, Any]:
    dataset = spec.get("dataset", {})
    return {f"dataset.{key}": dataset.get(key) for section, key in sorted(LOCATION_KEYS) if section == "dataset"}


def _shard_range(shard: dict[str, Any]) -> str:
    return f"{shard.get('first')} … {shard.get('last')} (positions {shard['start']}–{shard['stop'] - 1})"


def check_same_images(previous: dict[str, Any], spec: JobSpec, shard_plan: dict[str, Any]) -> list[str]:
    """Refuse to resume on other images than the run started with; the notes say what moved."""
    before, now = _locations(previous.get("spec", {})), _locations(spec.model_dump(mode="json"))
    moved = [f"{key} moved: {before[key]} -> {now[key]}" for key in before if before[key] != now[key]]
    old_shards = {shard["shard"]: shard for shard in previous.get("shard_plan", {}).get("shards", [])}
    if old_shards and not all("digest" in shard for shard in old_shards.values()):
        if moved:  # written before image lists were recorded: the location is all we know
            raise ResumeRefused(
                "this output was written by a version that did not record its image list, so its dataset cannot "
                "be recognised elsewhere: " + "; ".join(moved) + ".\nResume with the original location, choose "
                "another --out, or pass --new-run to discard the old results."
            )
        return []
    new_shards = {shard["shard"]: shard for shard in shard_plan["shards"]}
    problems = []
    for shard in sorted(set(old_shards) | set(new_shards)):
        old, new = old_shards.get(shard), new_shards.get(shard)
        if old is None:
            problems.append(f"shard {shard}: new, {_shard_range(new)}")  # type: ignore[arg-type]
        elif new is None:
            problems.append(f"shard {shard}: {_shard_range(old)} is gone")
        elif old["digest"] != new["digest"]:
            if (old.get("first"), old.get("last"), old["start"], old["stop"]) == (
                new.get("first"), new.get("last"), new["start"], new["stop"]
            ):
                problems.append(f"shard {shard}: {_shard_range(old)}: an image was relabelled or its file "
                                "replaced (labels, boxes or file sizes differ)")
            else:
                problems.append(f"shard {shard}: was {_shard_range(old)}, now {_shard_range(new)}")
    if problems:
        shown = problems[:8] + ([f"… and {len(problems) - 8} more shards"] if len(problems) > 8 else [])
        where = f" ({'; '.join(moved)})" if moved else ""
        raise ResumeRefused(
            f"the dataset's image list differs from the one run '{previous.get('name')}' started with{where}:\n  "
            + "\n  ".join(shown)
            + "\nResume with the original images, choose another --out, or pass --new-run to discard the old results."
        )
    if moved:
        return ["; ".join(moved) + f"; the same {shard_plan['images']} images (by id, label, boxes and file size): resuming"]
    return []
