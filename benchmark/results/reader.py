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


def degenerate_maps(store: OutputStore) -> dict[str, dict[str, int]]:
    """Method -> {'all_zero': images, 'non_finite': images} over the committed shards (their markers)."""
    totals: dict[str, dict[str, int]] = {}
    for marker in committed_shards(store).values():
        for method, kinds in (marker.get("degenerate_maps") or {}).items():
            for kind, count in kinds.items():
                totals.setdefault(method, {}).setdefault(kind, 0)
                totals[method][kind] += int(count)
    return totals


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


def read_table(
    store: OutputStore, table: str, markers: dict[int, dict] | None = None, columns: list[str] | None = None
) -> pa.Table:
    """All committed rows of one table, partition columns restored from the paths; ``columns``:
    only these (without partition columns this stays cheap enough for ``benchmark status``)."""
    schema = table_schema(table)
    names = columns or schema.arrow.names
    wanted = pa.schema([schema.arrow.field(name) for name in names])
    pieces = []
    for relative in committed_files(store, table, markers):
        # ParquetFile, not pq.read_table: that goes through pyarrow.dataset, which imports pandas
        file = pq.ParquetFile(io.BytesIO(store.read_bytes(relative) or b""))
        found = metadata_version(file.schema_arrow.metadata)
        if found is not None:
            check_version(found, store.display(relative))
        # one thread: the files are per shard and small, and Arrow's thread pool, once started, can
        # abort a short-lived command at interpreter exit (apache/arrow#34314)
        stored = set(file.schema_arrow.names)  # a file written before a column existed: with_defaults adds it
        piece = file.read(columns=[name for name in names if name not in schema.partition and name in stored],
                          use_threads=False)
        values = dict(_PARTITION.findall(relative))
        for key in schema.partition:
            if key in names:
                piece = piece.append_column(key, pa.array([values[key]] * piece.num_rows, pa.string()))
        pieces.append(with_defaults(piece, schema).select(names))
    if not pieces:
        return pa.Table.from_batches([], schema=wanted)  # not empty_table(): it imports pandas
    return pa.concat_tables(pieces).cast(wanted)
