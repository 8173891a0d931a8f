"""Output tables: schemas, the store, shard writing and reading committed results (DESIGN §9)."""

from .reader import committed_files, committed_shards, failed_shards, read_table
from .schema import (
    SCHEMA_VERSION, SchemaError, SchemaVersionError, TableSchema, aggregate_names, aggregate_schema, check_version,
    table_names, table_schema, validate_manifest,
)
from .store import OutputStore
from .writer import ShardWriter, marker_path, part_path

_QUERY_API = ("Results", "ResultsError", "open_results")


def __getattr__(name: str):
    """``open_results`` & co. load DuckDB and pandas, which shard workers never need: import on use."""
    if name in _QUERY_API:
        from . import query

        return getattr(query, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    *_QUERY_API,
    "OutputStore", "SCHEMA_VERSION", "SchemaError", "SchemaVersionError", "ShardWriter", "TableSchema",
    "aggregate_names", "aggregate_schema", "check_version", "committed_files", "committed_shards", "failed_shards",
    "marker_path", "part_path", "read_table", "table_names", "table_schema", "validate_manifest",
]
