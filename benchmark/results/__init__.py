"""Output tables: schemas, the store, shard writing and reading committed results (DESIGN §9)."""

from .reader import committed_files, committed_shards, failed_shards, read_table
from .schema import (
    SCHEMA_VERSION, SchemaError, SchemaVersionError, TableSchema, aggregate_names, aggregate_schema, check_version,
    table_names, table_schema, validate_manifest,
)
from .store import OutputStore
from .writer import ShardWriter, marker_path, part_path

__all__ = [
    "OutputStore", "SCHEMA_VERSION", "SchemaError", "SchemaVersionError", "ShardWriter", "TableSchema",
    "aggregate_names", "aggregate_schema", "check_version", "committed_files", "committed_shards", "failed_shards",
    "marker_path", "part_path", "read_table", "table_names", "table_schema", "validate_manifest",
]
