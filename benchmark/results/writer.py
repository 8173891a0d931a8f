"""Writing one shard's tables: validated, partitioned, atomic, then committed by a marker.

Layout (DESIGN §9): ``<out>/<table>/model=<m>/dataset=<d>/part-<shard>.parquet`` plus
``<out>/_commits/shard-<shard>.json``. The writer stamps what every row of a shard shares: the
partition values (in the path) and the ``shard`` column. A retried shard rewrites the same file names (never a
second copy) and removes parts an earlier attempt left behind for tables it now has no rows in.
"""

from __future__ import annotations

import io
import time
from typing import Any, Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .schema import SCHEMA_VERSION, SchemaError, TableSchema, conform, table_names, table_schema
from .store import COMMITS, FAILURES, OutputStore


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


def stamp_shard(table: pa.Table, schema: TableSchema, shard: int) -> pa.Table:
    """The table with its ``shard`` column, where its schema has one: experiments do not write it."""
    if "shard" not in schema.arrow.names:
        return table
    if "shard" not in table.column_names:
        return table.append_column("shard", pa.array(np.full(table.num_rows, shard, dtype=np.int32)))
    found = set(pc.unique(table.column("shard")).to_pylist())
    if found - {shard}:
        raise SchemaError(f"table '{schema.name}': rows of shards {sorted(found - {shard})} written as shard {shard}")
    return table


class ShardWriter:
    """``tables``: those a run may write (stale parts of the others are removed on retry); default every
    table with a schema. ``fence``: called before the first file of a shard and again before its
    marker; it raises when this run may no longer write the output (``engine.lease.LeaseFence``)."""

    def __init__(self, store: OutputStore, partition: dict[str, str], tables: tuple[str, ...] | None = None,
                 fence: Callable[[], None] | None = None):
        self.store = store
        self.partition = partition
        self.tables = tuple(table_names()) if tables is None else tables
        self.fence = fence or (lambda: None)

    def _file(self, name: str, table: pa.Table, shard: int) -> bytes:
        schema = table_schema(name)
        return parquet_bytes(conform(stamp_shard(table, schema, shard), schema, self.partition))

    def commit(self, shard: int, tables: dict[str, pa.Table], info: dict[str, Any]) -> dict[str, Any]:
        """Write every table of the shard, then its commit marker; returns the marker."""
        unknown = set(tables) - set(self.tables)
        if unknown:
            raise ValueError(f"shard {shard}: tables {sorted(unknown)} are not declared for this run")
        files: dict[str, dict[str, Any]] = {}
        encoded = {name: self._file(name, table, shard) for name, table in tables.items() if table.num_rows}
        self.fence()
        for name in self.tables:
            path = part_path(name, self.partition, shard)
            if name in encoded:
                self.store.write_bytes(path, encoded[name])
                files[name] = {"path": path, "rows": tables[name].num_rows}
            else:
                self.store.delete(path)
        marker = {"shard": shard, "files": files, "committed_at": time.time(), "schema_version": SCHEMA_VERSION, **info}
        self.fence()
        self.store.write_json(marker_path(shard), marker)
        self.store.delete(failure_path(shard))
        return marker

    def record_failure(self, shard: int, errors: pa.Table, info: dict[str, Any]) -> dict[str, Any]:
        """A shard that failed every attempt: its ``errors`` rows become visible, the shard stays
        uncommitted, so a resume tries it again."""
        path = part_path("errors", self.partition, shard)
        self.fence()
        self.store.write_bytes(path, self._file("errors", errors, shard))
        marker = {
            "shard": shard,
            "files": {"errors": {"path": path, "rows": errors.num_rows}},
            "failed_at": time.time(),
            "schema_version": SCHEMA_VERSION,
            **info,
        }
        self.store.write_json(failure_path(shard), marker)
        return marker
