"""The versioned Arrow schemas of the output tables, read from ``results_schema/``.

The JSON files are the contract (DESIGN §9): writers validate every table against them before
writing, so a column cannot silently change type or go missing.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import lru_cache
from pathlib import Path

import pyarrow as pa

from .store import AGGREGATES

SCHEMA_VERSION = 1


def _schema_root() -> Path:
    """``results_schema/`` of the source tree (a checkout, an editable install, a Ray working_dir),
    else the copy a regular install puts under ``<prefix>/share/benchmark`` (pyproject data-files)."""
    candidates = (Path(__file__).resolve().parents[2] / "results_schema",
                  Path(sys.prefix) / "share" / "benchmark" / "results_schema")
    return next((path for path in candidates if path.is_dir()), candidates[0])


SCHEMA_ROOT = _schema_root()


class SchemaError(ValueError):
    """A table does not match its declared schema."""


class SchemaVersionError(SchemaError):
    """An output was written with another version of ``results_schema/`` than this code reads."""


@dataclass(frozen=True)
class TableSchema:
    name: str
    version: int
    description: str
    arrow: pa.Schema  # every column, partition columns included
    partition: tuple[str, ...]  # columns stored in the path (model=…/dataset=…), not in the file
    descriptions: dict[str, str]
    # Columns added to the table after files were written without them, and the value such files read as.
    defaults: dict[str, object] = dataclass_field(default_factory=dict)

    @property
    def file_schema(self) -> pa.Schema:
        """The columns stored inside each Parquet file."""
        return pa.schema([f for f in self.arrow if f.name not in self.partition], metadata=self.arrow.metadata)


_SIMPLE = {
    "string": pa.string(),
    "bool": pa.bool_(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "float32": pa.float32(),
    "float64": pa.float64(),
    "float16": pa.float16(),
    "binary": pa.binary(),
}


def parse_type(text: str) -> pa.DataType:
    text = text.strip()
    if text in _SIMPLE:
        return _SIMPLE[text]
    if match := re.fullmatch(r"list<(.+)>", text):
        return pa.list_(parse_type(match.group(1)))
    if match := re.fullmatch(r"timestamp\[(\w+)(?:,\s*tz=([\w/+:-]+))?\]", text):
        return pa.timestamp(match.group(1), tz=match.group(2))
    raise SchemaError(f"unknown type '{text}' in results_schema")


def _parse_schema(name: str, data: dict) -> TableSchema:
    fields = [
        pa.field(f["name"], parse_type(f["type"]), nullable=f.get("nullable", False)) for f in data["fields"]
    ]
    metadata = {"table": name, "schema_version": str(data["version"])}
    return TableSchema(
        name=name,
        version=data["version"],
        description=data.get("description", ""),
        arrow=pa.schema(fields, metadata=metadata),
        partition=tuple(f["name"] for f in data["fields"] if f.get("partition")),
        descriptions={f["name"]: f.get("description", "") for f in data["fields"]},
        defaults={f["name"]: f["default"] for f in data["fields"] if "default" in f},
    )


# Tables declared in code (``declare_table``: a new experiment's, before its schema becomes a JSON file).
DECLARED: dict[str, TableSchema] = {}


def table_schema(name: str, version: int = SCHEMA_VERSION) -> TableSchema:
    if version == SCHEMA_VERSION and name in DECLARED:
        return DECLARED[name]
    return _file_schema(name, version)


@lru_cache(maxsize=None)
def _file_schema(name: str, version: int) -> TableSchema:
    path = SCHEMA_ROOT / f"v{version}" / f"{name}.json"
    if not path.is_file():
        raise SchemaError(f"no schema for table '{name}' (version {version}) at {path}")
    return _parse_schema(name, json.loads(path.read_text()))


# Columns every per-shard table has: the partition values (from the path) and the shard, stamped by the writer.
_STAMPED = [
    {"name": "model", "type": "string", "partition": True, "description": "Model name (hive partition)."},
    {"name": "dataset", "type": "string", "partition": True, "description": "Dataset kind (hive partition)."},
    {"name": "shard", "type": "int32", "description": "Shard that produced the row (stamped by the writer)."},
]


def declare_table(name: str, description: str, fields: list[dict]) -> TableSchema:
    """A per-shard table declared in code, ``fields`` in the JSON files' format (name, type, nullable,
    description); the partition columns and ``shard`` are added. Readers and writers of this process
    then treat it like a table of ``results_schema/``."""
    if (SCHEMA_ROOT / f"v{SCHEMA_VERSION}" / f"{name}.json").is_file():
        raise SchemaError(f"table '{name}' already has a schema in results_schema/")
    names = {f["name"] for f in fields}
    data = {"version": SCHEMA_VERSION, "description": description,
            "fields": list(fields) + [f for f in _STAMPED if f["name"] not in names]}
    DECLARED[name] = schema = _parse_schema(name, data)
    return schema


def with_defaults(table: pa.Table, schema: TableSchema) -> pa.Table:
    """A file's table with the columns added to its schema since it was written, at their declared
    ``default`` (an output of an earlier release reads as it would have been written now)."""
    for name, value in schema.defaults.items():
        if name not in table.column_names:
            field = schema.arrow.field(name)
            table = table.append_column(field, pa.array([value] * table.num_rows, field.type))
    return table


def forget_table(name: str) -> None:
    DECLARED.pop(name, None)


def table_names(version: int = SCHEMA_VERSION) -> list[str]:
    """The tables a run writes (one Parquet dataset each), without the manifest and aggregates."""
    files = {p.stem for p in (SCHEMA_ROOT / f"v{version}").glob("*.json") if p.stem != "manifest"}
    return sorted(files | (set(DECLARED) if version == SCHEMA_VERSION else set()))


def aggregate_schema(name: str, version: int = SCHEMA_VERSION) -> TableSchema:
    """Schema of an aggregate table (``<out>/aggregates/<name>.parquet``)."""
    return _file_schema(f"{AGGREGATES}/{name}", version)


def aggregate_names(version: int = SCHEMA_VERSION) -> list[str]:
    return sorted(p.stem for p in (SCHEMA_ROOT / f"v{version}" / AGGREGATES).glob("*.json"))


@lru_cache(maxsize=None)
def manifest_schema(version: int = SCHEMA_VERSION) -> dict:
    """The JSON Schema of ``manifest.json``."""
    return json.loads((SCHEMA_ROOT / f"v{version}" / "manifest.json").read_text())


def validate_manifest(manifest: dict) -> None:
    """Raise ``SchemaError`` naming the first offending key when the manifest breaks its schema."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(manifest))
    if error is not None:
        where = ".".join(str(part) for part in error.absolute_path) or "(top level)"
        raise SchemaError(f"manifest.json: {where}: {error.message}")


def check_version(found: object, where: str, written_by: str | None = None) -> None:
    """Refuse to read data of another schema version, saying which and what to do about it.

    ``found`` is the ``schema_version`` recorded with the data (manifest, commit marker, Parquet
    metadata); ``written_by`` the benchmark version that wrote it, when known.
    """
    try:
        version = int(found)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise SchemaVersionError(
            f"{where}: no valid schema_version ({found!r}); it was not written by benchmark, or is damaged"
        ) from None
    if version == SCHEMA_VERSION:
        return
    ours = _own_version()
    by = f" by benchmark {written_by}" if written_by else ""
    if version < SCHEMA_VERSION:
        advice = (
            f"read it with the benchmark version that wrote it (pip install 'benchmark=={written_by}')"
            if written_by
            else "read it with the older benchmark release that wrote it"
        )
        raise SchemaVersionError(
            f"{where} was written{by} with results schema v{version}, older than the v{SCHEMA_VERSION} this "
            f"benchmark ({ours}) reads: {advice}, or recompute it with this version "
            "(benchmark run JOB.yaml --out NEW_FOLDER, or --new-run on the same folder)"
        )
    raise SchemaVersionError(
        f"{where} was written{by} with results schema v{version}, newer than the v{SCHEMA_VERSION} this "
        f"benchmark ({ours}) reads: upgrade benchmark"
        + (f" to {written_by} or later" if written_by else "")
        + " to read it"
    )


def metadata_version(metadata: dict[bytes, bytes] | None) -> str | None:
    """The schema version stored in a Parquet file's key-value metadata (see ``TableSchema.arrow``)."""
    value = (metadata or {}).get(b"schema_version")
    return value.decode() if value is not None else None


def _own_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("benchmark")
    except metadata.PackageNotFoundError:
        return "unknown version"


def conform(table: pa.Table, schema: TableSchema, partition_values: dict[str, str]) -> pa.Table:
    """Check a table against its schema and return it in the file layout (partition columns dropped).

    Columns must all be present (no extras; one with a declared ``default`` is added at that value);
    types are cast only where the cast is lossless in
    kind (e.g. int64 -> int32 of small values); nulls in non-nullable columns are errors.
    """
    expected = schema.file_schema
    table = with_defaults(table, schema)  # a column with a declared default may be left out
    names = set(table.column_names) - set(schema.partition)
    missing = [f.name for f in expected if f.name not in names]
    extra = sorted(names - set(expected.names))
    if missing or extra:
        raise SchemaError(f"table '{schema.name}': missing columns {missing}, unexpected columns {extra}")
    for key in schema.partition:
        if key not in partition_values:
            raise SchemaError(f"table '{schema.name}': partition value for '{key}' missing")
    columns = []
    for field in expected:
        column = table.column(field.name)
        if not column.type.equals(field.type):
            try:
                column = column.cast(field.type, safe=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
                raise SchemaError(
                    f"table '{schema.name}': column '{field.name}' is {column.type}, schema says {field.type}: {error}"
                ) from None
        if not field.nullable and column.null_count:
            raise SchemaError(f"table '{schema.name}': column '{field.name}' has {column.null_count} nulls")
        columns.append(column)
    return pa.Table.from_arrays(columns, schema=expected)
