"""The output store on an S3-compatible server (moto's server mode on 127.0.0.1): the same
semantics as on a local folder: whole-object writes, 'not found' as None, markers decide."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from benchmark.results import OutputStore, ShardWriter, committed_shards, read_table
from benchmark.results.reader import failed_shards

from .ray_support import bucket_keys, new_bucket
from .test_shards_and_store import error_row, shard_row


@pytest.fixture
def bucket(s3_endpoint, request) -> str:
    return new_bucket(s3_endpoint, "store-" + request.node.name.replace("_", "-")[:40].strip("-").lower())


def test_uri_options_whole_objects_and_not_found(s3_endpoint, bucket) -> None:
    uri = f"s3://{bucket}/runs/a?endpoint_override={s3_endpoint}&scheme=http&region=us-east-1"
    store = OutputStore(uri)
    assert store.object_store and store.uri == f"s3://{bucket}/runs/a"  # the query configures, it is no path
    assert store.display("manifest.json") == f"s3://{bucket}/runs/a/manifest.json"
    assert store.read_bytes("manifest.json") is None and store.read_json("_commits/shard-1.json") is None
    assert not store.exists("manifest.json") and store.list_files("_commits") == []
    store.write_json("manifest.json", {"name": "a"})
    store.write_bytes("shards/model=m/dataset=d/part-1.parquet", b"x" * 10)
    assert store.read_json("manifest.json") == {"name": "a"} and store.exists("manifest.json")
    assert store.list_files("") == ["manifest.json", "shards/model=m/dataset=d/part-1.parquet"]
    # one object per file: no folder markers, no temporary objects
    assert bucket_keys(s3_endpoint, bucket) == [
        "runs/a/manifest.json", "runs/a/shards/model=m/dataset=d/part-1.parquet"
    ]
    store.delete("manifest.json")
    store.delete("manifest.json")  # deleting what is not there is fine
    store.delete_dir("shards")
    assert bucket_keys(s3_endpoint, bucket) == ["runs/a/"]  # pyarrow keeps the emptied prefix as a folder marker
    assert store.list_files("") == []


def test_commit_retry_failure_and_uncommitted_parts(s3_endpoint, bucket) -> None:
    store = OutputStore(f"s3://{bucket}/out?endpoint_override={s3_endpoint}&scheme=http")
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    writer.commit(3, {"shards": shard_row(3), "errors": error_row(3, "a.jpg")}, {"spec_hash": "h"})
    writer.commit(3, {"shards": shard_row(3)}, {"spec_hash": "h"})  # a retry overwrites, never duplicates
    assert read_table(store, "shards").num_rows == 1 and read_table(store, "errors").num_rows == 0
    assert "out/errors/model=m/dataset=d/part-3.parquet" not in bucket_keys(s3_endpoint, bucket)
    piece = pq.read_table(store.open_buffer("shards/model=m/dataset=d/part-3.parquet"))
    assert piece.column("shard").to_pylist() == [3]
    # a part without its marker (the worker died in between) is invisible
    store.write_bytes("shards/model=m/dataset=d/part-7.parquet", b"not parquet at all")
    assert sorted(committed_shards(store)) == [3] and read_table(store, "shards").num_rows == 1
    writer.record_failure(8, error_row(8, None), {"spec_hash": "h"})
    assert list(failed_shards(store)) == [8] and read_table(store, "errors").column("where").to_pylist() == ["shard"]
    writer.commit(8, {"shards": shard_row(8)}, {"spec_hash": "h"})
    assert failed_shards(store) == {} and sorted(committed_shards(store)) == [3, 8]


def test_endpoint_from_the_environment(s3_endpoint, bucket, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3_endpoint}")  # the standard AWS variable
    store = OutputStore(f"s3://{bucket}/env")
    store.write_json("manifest.json", {"ok": True})
    assert store.read_json("manifest.json") == {"ok": True}
    assert bucket_keys(s3_endpoint, bucket) == ["env/manifest.json"]
