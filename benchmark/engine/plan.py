"""Shards: contiguous, stable ranges of a dataset's canonical order (DESIGN §1, §8).

Shard k covers canonical positions [k·size, (k+1)·size), clipped to the run's selection
(offset/limit). Ids are therefore a property of the dataset order, not of the selection:
shard 40 names the same images in a run of the first 1000 images and in one of 4000 more.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..data.base import ImageRecord
from ..data.identity import BASIS, images_digest


@dataclass(frozen=True)
class ShardTask:
    shard: int
    start: int  # canonical position of the first record
    records: tuple[ImageRecord, ...]

    @property
    def stop(self) -> int:
        return self.start + len(self.records)

    def __len__(self) -> int:
        return len(self.records)


def plan_shards(records: list[ImageRecord], offset: int, shard_size: int) -> list[ShardTask]:
    """Split the selected records (which start at canonical position ``offset``) into shards."""
    tasks = []
    position, end = offset, offset + len(records)
    while position < end:
        shard = position // shard_size
        stop = min(end, (shard + 1) * shard_size)
        tasks.append(ShardTask(shard, position, tuple(records[position - offset : stop - offset])))
        position = stop
    return tasks


def describe_shards(tasks: list[ShardTask], shard_size: int) -> dict:
    """The manifest's shard plan; each shard's ``digest`` identifies its images (``data.identity``)."""
    return {
        "shard_size": shard_size,
        "images": sum(len(t) for t in tasks),
        "shards": [
            {"shard": t.shard, "start": t.start, "stop": t.stop, "first": t.records[0].image_id,
             "last": t.records[-1].image_id, "digest": images_digest(t.records)}
            for t in tasks
        ],
    }


def dataset_fingerprint(shard_plan: dict) -> dict:
    """The run's image list in one digest (over the shards' digests)."""
    digests = "".join(shard.get("digest", "?") for shard in shard_plan["shards"])
    return {"basis": BASIS, "images": shard_plan["images"], "digest": hashlib.sha256(digests.encode()).hexdigest()[:16]}
