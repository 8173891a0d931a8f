"""Reading what a run has committed: markers first, then only the files they list."""

from __future__ import annotations

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq

from .schema import check_version, metadata_version, table_schema, with_defaults
from .store import COMMITS, FAILURES, OutputStore

_MARKER = re.compile(r"shard-(\d+)\.json$")
_PARTITION = re.compile(r"(\w+)=([^/]+)")


def run_spec_hashes(manifest: dict) -> set[str]:
    """Spec hashes whose commit markers belong to the run of ``manifest``: its own, and those of
    equivalent specs an earlier version hashed differently (with the dataset's location)."""
    return {manifest.get("spec_hash"), *manifest.get("equivalent_spec_hashes", [])} - {None}


def committed_shards(store: OutputStore) -> dict[int, dict]:
    """Shard id -> commit marker, for every committed shard."""
    return _markers(store, COMMITS)


def failed_shards(store: OutputStore) -> dict[int, dict]:
    """Shard id -> failure marker, for shards that failed and were not committed since."""
    committed = committed_shards(store)
    return {shard: m for shard, m in _markers(store, FAILURES).items() if shard not in committed}


def _markers(store: OutputStore, folder: str) -> dict[int, dict]:
    markers = {}
    for relative in store.list_files(folder):
        match = _MARKER.search(relative)
        if match:
            marker = store.read_json(relative)
            if marker is not None:
                if "schema_version" in marker:  # markers of the first release carry none: v1
                    check_version(marker["schema_version"], store.display(relative))
                markers[int(match.group(1))] = marker
    return markers


def committed_files(store: OutputStore, table: str, markers: dict[int, dict] | None = None) -> list[str]:
    """Files of ``table`` that readers may see: those of committed shards, and for ``errors``
    also those of failed shards (their error rows are the record of the failure)."""
    if markers is None:
        markers = committed_shards(store)
        if table == "errors":
            markers = {**failed_shards(store), **markers}
    return [m["files"][table]["path"] for _, m in sorted(markers.items()) if table in m.get("files", {})]


def read_table(store: OutputStore, table: str, markers: dict[int, dict] | None = None) -> pa.Table:
    """All committed rows of one table, partition columns restored from the paths."""
    schema = table_schema(table)
    pieces = []
    for relative in committed_files(store, table, markers):
        piece = pq.read_table(io.BytesIO(store.read_bytes(relative) or b""))
        found = metadata_version(piece.schema.metadata)
        if found is not None:
            check_version(found, store.display(relative))
        values = dict(_PARTITION.findall(relative))
        for key in schema.partition:
            piece = piece.append_column(key, pa.array([values[key]] * piece.num_rows, pa.string()))
        pieces.append(with_defaults(piece, schema).select(schema.arrow.names))
    if not pieces:
        return schema.arrow.empty_table()
    return pa.concat_tables(pieces).cast(schema.arrow)
