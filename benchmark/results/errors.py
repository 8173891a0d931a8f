"""The run's unreadable images, grouped by why: for the run summary, ``benchmark status`` and the
report. Needs only pyarrow (``benchmark status`` must stay fast)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa


@dataclass
class LoadFailures:
    """Images of one reason (the reason without the file's path in front)."""

    reason: str
    image_ids: list[str] = field(default_factory=list)


def load_failures(errors: pa.Table) -> list[LoadFailures]:
    """The ``errors`` rows of images that could not be loaded, grouped by reason, largest group first."""
    if errors.num_rows == 0:
        return []
    groups: dict[str, LoadFailures] = defaultdict(lambda: LoadFailures(""))
    rows = zip(*(errors.column(name).to_pylist() for name in ("where", "image_id", "source", "reason")))
    for where, image_id, source, reason in rows:
        if where != "load":
            continue
        text = str(reason or "unknown")
        if source and text.startswith(f"{source}: "):
            text = text[len(source) + 2 :]
        group = groups[text]
        group.reason = text
        group.image_ids.append(str(image_id))
    return sorted(groups.values(), key=lambda group: (-len(group.image_ids), group.reason))


def describe_load_failures(failures: list[LoadFailures], examples: int = 3) -> list[str]:
    """One line per reason: count, reason and the first few image ids."""
    lines = []
    for group in failures:
        ids = ", ".join(group.image_ids[:examples]) + (" …" if len(group.image_ids) > examples else "")
        lines.append(f"{len(group.image_ids)} × {group.reason} ({ids})")
    return lines
