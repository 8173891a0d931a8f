"""``benchmark status``: what an output holds, from its manifest, markers and two small tables.

Kept free of torch and the evaluation code, so the answer comes at once (the CLI imports this
module only)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..results import OutputStore, committed_shards, failed_shards, read_table
from ..results.errors import load_failures
from ..results.reader import degenerate_maps, run_spec_hashes
from ..results.store import MANIFEST


def status(out: str) -> dict[str, Any]:
    """Done / missing / failed shards, image and error counts of an output, from its markers."""
    store = OutputStore(out)
    manifest = store.read_json(MANIFEST)
    if manifest is None:
        raise FileNotFoundError(f"{out}: no {MANIFEST}; this is not the output of a run (or it has not started)")
    planned = [s["shard"] for s in manifest["shard_plan"]["shards"]]
    hashes = run_spec_hashes(manifest)
    committed = {s: m for s, m in committed_shards(store).items() if m.get("spec_hash") in hashes}
    failed = failed_shards(store)
    errors = read_table(store, "errors", columns=["where", "image_id", "source", "reason"])
    shards = read_table(store, "shards", columns=["images", "seconds"])
    return {
        "out": out,
        "name": manifest["name"],
        "spec_hash": manifest["spec_hash"],
        "run_id": manifest["run_id"],
        "shards_total": len(planned),
        "done": sorted(s for s in planned if s in committed),
        "failed": sorted(s for s in planned if s in failed),
        "missing": sorted(s for s in planned if s not in committed and s not in failed),
        "images_total": manifest["shard_plan"]["images"],
        "images_done": int(sum(shards.column("images").to_pylist())) if shards.num_rows else 0,
        "errors_by_kind": dict(Counter(errors.column("where").to_pylist())) if errors.num_rows else {},
        "load_failures": {group.reason: group.image_ids for group in load_failures(errors)},
        "shard_seconds": float(sum(shards.column("seconds").to_pylist())) if shards.num_rows else 0.0,
        "degenerate_maps": degenerate_maps(store),
        "last_attempt": manifest.get("last_attempt"),
        "manifest": manifest,
    }


def format_scheduling(details: dict[str, Any]) -> str | None:
    """One line for the run summary and ``benchmark status``; None when nothing was measured."""
    stats = details.get("scheduling") or {}
    if not stats.get("shards"):
        return None
    line = (
        f"scheduling overhead {1000 * stats['overhead_mean_s']:.1f} ms per shard "
        f"(median {1000 * stats['overhead_median_s']:.1f}, p95 {1000 * stats['overhead_p95_s']:.1f}, "
        f"max {1000 * stats['overhead_max_s']:.1f} ms) = {100 * stats['overhead_ratio']:.2g} % of "
        f"{stats['shard_seconds_mean']:.2f} s per shard, over {stats['shards']} shards"
    )
    executor = details.get("executor")
    if executor == "ray":
        line += f"; {details.get('actors')} actors, {details.get('in_flight')} shards in flight per actor"
        if details.get("worker_losses"):
            line += f", {details['worker_losses']} shard tries lost with their worker"
    elif executor:
        line += f"; executor {executor}"
    return line


__all__ = ["format_scheduling", "status"]
