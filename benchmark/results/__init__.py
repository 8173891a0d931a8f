"""Output tables: schemas, the store, shard writing and reading committed results (DESIGN §9)."""

from .reader import committed_files, committed_shards, failed_shards, read_table
from .schema import SCHEMA_VERSION, SchemaError, TableSchema, table_names, table_schema
from .store import OutputStore
from .writer import ShardWriter, marker_path, part_path

__all__ = [
    "OutputStore", "SCHEMA_VERSION", "SchemaError", "ShardWriter", "TableSchema", "committed_files",
    "committed_shards", "failed_shards", "marker_path", "part_path", "read_table", "table_names", "table_schema",
]
