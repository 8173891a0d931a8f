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


# -- issue 16 item 6: one PUT per file; what an interrupted writer left is removed ------------------
def test_each_file_is_one_put(s3_server, s3_endpoint, bucket) -> None:
    """The README promises one PUT per file: pyarrow's default output stream sends three requests
    (create, upload part, complete a multipart upload) for even the smallest file."""
    store = OutputStore(f"s3://{bucket}/one?endpoint_override={s3_endpoint}&scheme=http")
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    s3_server.requests.clear()
    marker = writer.commit(4, {"shards": shard_row(4), "errors": error_row(4, "a.jpg")}, {"spec_hash": "h"})
    for relative in [entry["path"] for entry in marker["files"].values()] + ["_commits/shard-4.json"]:
        writes = [(m, q) for m, q in s3_server.requests_for(f"/{bucket}/one/{relative}") if m in ("PUT", "POST")]
        assert writes == [("PUT", "")], (relative, writes)
    assert not any("uploads" in query or "uploadId" in query for _, _, query in s3_server.requests)


def plant_incomplete_upload(endpoint: str, bucket: str, key: str) -> str:
    """What a worker killed in the middle of a multipart upload leaves: an upload with a part."""
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    upload = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    client.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=b"x" * 1024)
    return upload


def pending_uploads(endpoint: str, bucket: str) -> list[str]:
    import boto3

    client = boto3.client("s3", endpoint_url=f"http://{endpoint}")
    return sorted(u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []))


def test_a_resume_removes_orphaned_parts_and_incomplete_uploads(s3_endpoint, bucket) -> None:
    import pyarrow.dataset as pads

    from benchmark.results.cleanup import remove_uncommitted

    store = OutputStore(f"s3://{bucket}/out?endpoint_override={s3_endpoint}&scheme=http")
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    writer.commit(1, {"shards": shard_row(1)}, {"spec_hash": "h"})
    writer.record_failure(2, error_row(2, None), {"spec_hash": "h"})
    writer.commit(3, {"shards": shard_row(3)}, {"spec_hash": "h"})
    (store.fs.delete_file(store.path("_commits/shard-3.json")))  # shard 3's writer died before its marker
    plant_incomplete_upload(s3_endpoint, bucket, "out/randomization/model=m/dataset=d/part-5.parquet")
    plant_incomplete_upload(s3_endpoint, bucket, "elsewhere/part-9.parquet")  # not this output's
    removed = remove_uncommitted(store)
    assert removed.parts == ["shards/model=m/dataset=d/part-3.parquet"] and removed.uploads == 1
    assert pending_uploads(s3_endpoint, bucket) == ["elsewhere/part-9.parquet"]
    # a plain pyarrow dataset over the table sees the committed shard only; the failure's errors stay
    seen = pads.dataset(store.path("shards"), filesystem=store.fs, format="parquet", partitioning="hive").to_table()
    assert seen.column("shard").to_pylist() == [1]
    assert read_table(store, "errors").column("shard").to_pylist() == [2]


def test_a_resume_on_s3_cleans_up_end_to_end(s3_endpoint, bucket, tmp_path, capsys) -> None:
    from benchmark.cli.main import main

    from .jobs import TINY, write_job

    job = write_job(tmp_path, {**TINY, "dataset": {**TINY["dataset"], "synthetic_images": 2}})
    uri = f"s3://{bucket}/run?endpoint_override={s3_endpoint}&scheme=http"
    args = ["run", str(job), "--executor", "inline", "--out", uri, "--no-progress"]
    assert main(args) == 0
    plant_incomplete_upload(s3_endpoint, bucket, "run/maps/model=resnet34/dataset=synthetic/part-0.parquet")
    store = OutputStore(uri)
    store.write_bytes("occlusion/model=resnet34/dataset=synthetic/part-7.parquet", b"left by a dead worker")
    capsys.readouterr()
    assert main(args) == 0
    assert "1 part files of uncommitted shards, 0 temporary files, 1 incomplete uploads" in capsys.readouterr().err
    assert pending_uploads(s3_endpoint, bucket) == []
    assert not store.exists("occlusion/model=resnet34/dataset=synthetic/part-7.parquet")
