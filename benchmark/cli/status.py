"""``benchmark status OUT``: shards done / missing / failed, errors and the spec hash."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("status", help="progress of a run: shards done / missing / failed, errors")
    parser.add_argument("out", help="output URI of the run")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    parser.set_defaults(handler=show_status)


def _ranges(shards: list[int]) -> str:
    if not shards:
        return "none"
    parts, start, previous = [], shards[0], shards[0]
    for shard in shards[1:] + [None]:
        if shard is not None and shard == previous + 1:
            previous = shard
            continue
        parts.append(f"{start}" if start == previous else f"{start}-{previous}")
        if shard is not None:
            start = previous = shard
    return ", ".join(parts)


def _writer(out: str) -> str:
    """Who holds the output's lease (a driver writing it now), if anyone."""
    from ..engine.lease import read_lease
    from ..results import OutputStore

    lease = read_lease(OutputStore(out))
    if lease is None:
        return "none (no driver holds the output's lease)"
    stale = lease.stale()
    return f"{lease.describe()}" + (f" — stale: {stale}; the next run takes it over" if stale else "")


def show_status(args: argparse.Namespace) -> int:
    from ..engine.status import format_scheduling, status

    report = status(args.out)
    if args.json:
        report = {k: v for k, v in report.items() if k != "manifest"}
        print(json.dumps(report, indent=2))
        return 0 if not report["failed"] else 1
    manifest = report["manifest"]
    print(f"run       {report['name']} ({report['run_id']}), spec hash {report['spec_hash']}")
    print(f"output    {report['out']}")
    print(f"writer    {_writer(args.out)}")
    print(f"shards    {len(report['done'])}/{report['shards_total']} done, {len(report['missing'])} missing, {len(report['failed'])} failed")
    print(f"  done    {_ranges(report['done'])}")
    print(f"  missing {_ranges(report['missing'])}")
    print(f"  failed  {_ranges(report['failed'])}")
    print(f"images    {report['images_done']}/{report['images_total']} evaluated")
    errors = ", ".join(f"{count} {kind}" for kind, count in sorted(report["errors_by_kind"].items())) or "none"
    print(f"errors    {errors}")
    for reason, image_ids in report["load_failures"].items():
        shown = ", ".join(image_ids[:3]) + (" …" if len(image_ids) > 3 else "")
        print(f"  {len(image_ids)} image(s) unreadable: {reason} ({shown})")
    if report["done"]:
        print(f"compute   {report['shard_seconds']:.1f} s over committed shards "
              f"({report['shard_seconds'] / len(report['done']):.2f} s per shard)")
    for method, kinds in sorted(report["degenerate_maps"].items()):
        found = ", ".join(f"{count} {kind.replace('_', '-')}" for kind, count in sorted(kinds.items()))
        print(f"warning   {method}: trained-model maps {found} (images)")
    last = manifest.get("last_attempt")
    if last:
        print(f"last run  {last['seconds']:.1f} s, {last['shards_run']} shards run, failed: {last['shards_failed'] or 'none'}")
        scheduling = format_scheduling(last)
        if scheduling:
            print(f"          {scheduling}")
    return 0 if not report["failed"] else 1
