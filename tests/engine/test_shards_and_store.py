"""Shard plans, the atomic store, schema validation and commit markers (DESIGN §8, §9, §11)."""

from __future__ import annotations

import os
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from benchmark.data.base import ImageRecord
from benchmark.engine.plan import plan_shards
from benchmark.results import OutputStore, SchemaError, ShardWriter, committed_shards, read_table, table_schema
from benchmark.results.reader import failed_shards
from benchmark.results.schema import conform, parse_type, table_names


def records(n: int) -> list[ImageRecord]:
    return [ImageRecord(f"img{i:03d}", f"/data/img{i:03d}.jpg") for i in range(n)]


def test_shards_are_contiguous_and_aligned_to_the_canonical_order() -> None:
    everything = records(25)
    tasks = plan_shards(everything, offset=0, shard_size=10)
    assert [(t.shard, t.start, t.stop) for t in tasks] == [(0, 0, 10), (1, 10, 20), (2, 20, 25)]
    assert [r for t in tasks for r in t.records] == everything
    # a selection starting at offset 13 keeps the ids of the full plan: shard 1 is partial
    later = plan_shards(everything[13:], offset=13, shard_size=10)
    assert [(t.shard, t.start, t.stop) for t in later] == [(1, 13, 20), (2, 20, 25)]
    assert later[1].records == tasks[2].records


def test_schema_files_parse_and_partition_columns_are_declared() -> None:
    assert {"randomization", "occlusion", "errors", "shards"} <= set(table_names())
    for name in table_names():
        schema = table_schema(name)
        assert schema.partition == ("model", "dataset")
        assert "model" not in schema.file_schema.names
    assert parse_type("list<float32>") == pa.list_(pa.float32())
    assert parse_type("timestamp[ms, tz=UTC]") == pa.timestamp("ms", tz="UTC")


def shard_row(shard: int) -> pa.Table:
    return pa.table({
        "shard": [shard], "images": [3], "errors": [0], "seconds": [1.5], "worker": ["w"], "device": ["cpu"],
        "attempt": [1], "finished_at": pa.array([datetime.now(timezone.utc)], pa.timestamp("ms", tz="UTC")),
    })


def error_row(shard: int, image: str | None) -> pa.Table:
    return pa.table({
        "where": ["load" if image else "shard"], "image_id": pa.array([image], pa.string()),
        "source": pa.array([None], pa.string()), "shard": [shard], "attempt": [1], "reason": ["broken"],
    })


def test_conform_rejects_missing_columns_wrong_types_and_nulls() -> None:
    schema = table_schema("shards")
    good = conform(shard_row(1), schema, {"model": "m", "dataset": "d"})
    assert good.schema.field("shard").type == pa.int32()  # int64 input cast losslessly
    with pytest.raises(SchemaError, match="missing columns \\['worker'\\]"):
        conform(shard_row(1).drop(["worker"]), schema, {"model": "m", "dataset": "d"})
    with pytest.raises(SchemaError, match="'images'"):
        conform(shard_row(1).set_column(1, "images", pa.array(["three"])), schema, {"model": "m", "dataset": "d"})
    with pytest.raises(SchemaError, match="nulls"):
        conform(shard_row(1).set_column(4, "worker", pa.array([None], pa.string())), schema, {"model": "m", "dataset": "d"})


def test_writer_layout_commit_and_retry_without_duplicates(tmp_path) -> None:
    store = OutputStore(str(tmp_path / "out"))
    writer = ShardWriter(store, {"model": "resnet50", "dataset": "samples"})
    writer.commit(3, {"shards": shard_row(3), "errors": error_row(3, "a.jpg")}, {"spec_hash": "h"})
    assert (tmp_path / "out/shards/model=resnet50/dataset=samples/part-3.parquet").is_file()
    assert (tmp_path / "out/_commits/shard-3.json").is_file()
    # no temporary files are left behind
    assert not [f for _, _, files in os.walk(tmp_path) for f in files if f.startswith(".")]
    # a retry with no errors overwrites the shard and removes the stale errors part
    writer.commit(3, {"shards": shard_row(3)}, {"spec_hash": "h"})
    assert read_table(store, "shards").num_rows == 1
    assert read_table(store, "errors").num_rows == 0
    assert not (tmp_path / "out/errors/model=resnet50/dataset=samples/part-3.parquet").exists()
    table = read_table(store, "shards")
    assert table.column("model").to_pylist() == ["resnet50"] and table.schema == table_schema("shards").arrow


def test_uncommitted_parts_are_invisible_and_failures_are_recorded(tmp_path) -> None:
    store = OutputStore(str(tmp_path))
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    # a crash after writing a part but before the marker: readers must not see it
    store.write_bytes("shards/model=m/dataset=d/part-7.parquet", b"garbage that is not parquet")
    assert 7 not in committed_shards(store)
    assert read_table(store, "shards").num_rows == 0
    writer.record_failure(8, error_row(8, None), {"spec_hash": "h"})
    assert list(failed_shards(store)) == [8]
    assert read_table(store, "errors").column("where").to_pylist() == ["shard"]
    writer.commit(8, {"shards": shard_row(8)}, {"spec_hash": "h"})
    assert failed_shards(store) == {} and list(committed_shards(store)) == [8]


def test_local_leftovers_of_dead_writers_are_removed_so_plain_globs_see_committed_shards(tmp_path) -> None:
    """Issue 16 item 6 (local side): a writer killed before its rename leaves a dot-prefixed
    temporary file, one killed before its marker leaves part files; DuckDB's glob reads both."""
    import duckdb

    from benchmark.results.cleanup import remove_uncommitted

    store = OutputStore(str(tmp_path / "out"))
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    writer.commit(1, {"shards": shard_row(1)}, {"spec_hash": "h"})
    writer.commit(2, {"shards": shard_row(2)}, {"spec_hash": "h"})
    os.remove(store.path("_commits/shard-2.json"))  # died before committing shard 2
    folder = tmp_path / "out" / "shards" / "model=m" / "dataset=d"
    (folder / ".part-3.parquet.tmp-0123abcd").write_bytes((folder / "part-1.parquet").read_bytes())  # died mid-rename
    glob = f"{tmp_path}/out/shards/**/*.parquet"
    assert sorted(duckdb.sql(f"SELECT shard FROM read_parquet('{glob}')").fetchall()) == [(1,), (2,)]
    removed = remove_uncommitted(store)
    assert removed.parts == ["shards/model=m/dataset=d/part-2.parquet"]
    assert removed.temporary == ["shards/model=m/dataset=d/.part-3.parquet.tmp-0123abcd"]
    assert duckdb.sql(f"SELECT shard FROM read_parquet('{glob}')").fetchall() == [(1,)]
    assert sorted(p.name for p in folder.iterdir()) == ["part-1.parquet"]
    assert remove_uncommitted(store).counts() == {"parts": 0, "temporary": 0, "uploads": 0}
