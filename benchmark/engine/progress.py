"""The run's progress bar: shards, images, images/s, ETA and failures (DESIGN §2)."""

from __future__ import annotations

import sys

from tqdm import tqdm


class Progress:
    def __init__(self, total_images: int, total_shards: int, done_shards: int = 0, enabled: bool = True) -> None:
        self.total_shards = total_shards
        self.done = done_shards
        self.failures = 0
        self.bar = tqdm(
            total=total_images,
            unit="img",
            desc="images",
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        self._postfix()

    def _postfix(self) -> None:
        self.bar.set_postfix_str(f"shards {self.done}/{self.total_shards}, failed {self.failures}")

    def shard_done(self, summary: dict) -> None:
        self.done += 1
        self.bar.update(summary["images"] + summary.get("errors", 0))
        self._postfix()

    def shard_failed(self, images: int) -> None:
        self.failures += 1
        self.bar.update(images)
        self._postfix()

    def note(self, message: str) -> None:
        self.bar.write(message, file=sys.stderr)

    def close(self) -> None:
        self.bar.close()
