"""Writing one shard's tables: validated, partitioned, atomic, then committed by a marker.

Layout (DESIGN §9): ``<out>/<table>/model=<m>/dataset=<d>/part-<shard>.parquet`` plus
``<out>/_commits/shard-<shard>.json``. A retried shard rewrites the same file names (never a
second copy) and removes parts an earlier attempt left behind for tables it now has no rows in.
"""

from __future__ import annotations

import io
import time
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import SCHEMA_VERSION, conform, table_schema
from .store import COMMITS, FAILURES, OutputStore

SHARD_TABLES = (
    "randomization", "occlusion", "activations", "logits", "skip_path", "kept_features", "maps", "errors", "shards",
)


def part_path(table: str, partition: dict[str, str], shard: int) -> str:
    folders = "/".join(f"{key}={value}" for key, value in partition.items())
    return f"{table}/{folders}/part-{shard}.parquet"


def marker_path(shard: int) -> str:
    return f"{COMMITS}/shard-{shard}.json"


def failure_path(shard: int) -> str:
    return f"{FAILURES}/shard-{shard}.json"


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class ShardWriter:
    def __init__(self, store: OutputStore, partition: dict[str, str], tables: tuple[str, ...] = SHARD_TABLES):
        self.store = store
        self.partition = partition
        self.tables = tables

    def commit(self, shard: int, tables: dict[str, pa.Table], info: dict[str, Any]) -> dict[str, Any]:
        """Write every table of the shard, then its commit marker; returns the marker."""
        unknown = set(tables) - set(self.tables)
        if unknown:
            raise ValueError(f"shard {shard}: tables {sorted(unknown)} are not declared for this run")
        files: dict[str, dict[str, Any]] = {}
        encoded = {
            name: parquet_bytes(conform(table, table_schema(name), self.partition))
            for name, table in tables.items()
            if table.num_rows
        }
        for name in self.tables:
            path = part_path(name, self.partition, shard)
            if name in encoded:
                self.store.write_bytes(path, encoded[name])
                files[name] = {"path": path, "rows": tables[name].num_rows}
            else:
                self.store.delete(path)
        marker = {"shard": shard, "files": files, "committed_at": time.time(), "schema_version": SCHEMA_VERSION, **info}
        self.store.write_json(marker_path(shard), marker)
        self.store.delete(failure_path(shard))
        return marker

    def record_failure(self, shard: int, errors: pa.Table, info: dict[str, Any]) -> dict[str, Any]:
        """A shard that failed every attempt: its ``errors`` rows become visible, the shard stays
        uncommitted, so a resume tries it again."""
        path = part_path("errors", self.partition, shard)
        self.store.write_bytes(path, parquet_bytes(conform(errors, table_schema("errors"), self.partition)))
        marker = {
            "shard": shard,
            "files": {"errors": {"path": path, "rows": errors.num_rows}},
            "failed_at": time.time(),
            "schema_version": SCHEMA_VERSION,
            **info,
        }
        self.store.write_json(failure_path(shard), marker)
        return marker
