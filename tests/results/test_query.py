"""`benchmark query` and the Python API: views of committed files only, explicit partition
types, filters, output formats, clear errors, and the same answers from an s3:// output."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli.main import main
from benchmark.results import OutputStore, read_table
from benchmark.results.query import open_results

from .conftest import IMAGES, METHODS, SEEDS, STAGES
from .fakes import fake_output, randomization_rows


def reference(out: Path, table: str) -> pd.DataFrame:
    """The table as the engine's own reader returns it (independent of DuckDB)."""
    return read_table(OutputStore(str(out)), table).to_pandas()


def test_each_table_is_a_view_with_every_committed_row(tiny_run) -> None:
    results = open_results(str(tiny_run))
    assert results.complete and results.state().endswith("3 of 3 shards committed")
    for table in ("randomization", "occlusion", "maps", "shards", "errors", "activations", "logits"):
        assert results.count(table) == len(reference(tiny_run, table)), table
    assert results.count("randomization") == IMAGES * len(METHODS) * len(SEEDS) * len(STAGES) * 3 * 2 * 2


def test_filters_equal_pandas_filtering(tiny_run) -> None:
    results = open_results(str(tiny_run))
    frame = results.frame("randomization", method=["gradient", "noise"], stage=2, seed=1, metric="ssim",
                          order_by=["method", "image_id", "normalization", "absolute"])
    expected = reference(tiny_run, "randomization")
    expected = expected[expected.method.isin(["gradient", "noise"]) & (expected.stage == 2) & (expected.seed == 1)
                        & (expected.metric == "ssim")].sort_values(["method", "image_id", "normalization", "absolute"])
    assert len(frame) == len(expected) == 2 * IMAGES * 2 * 2
    assert np.allclose(frame.value.to_numpy(), expected.value.to_numpy())
    assert results.table("occlusion", columns=["method", "auc"], model="resnet34", kernel=4).num_rows == IMAGES * len(METHODS)
    assert results.table("occlusion", method=[]).num_rows == 0
    assert results.table("occlusion", method=None).num_rows == IMAGES * len(METHODS) * 2


def test_sql_matches_pandas_groupby(tiny_run) -> None:
    results = open_results(str(tiny_run))
    answer = results.sql("SELECT method, kernel, avg(auc) AS auc FROM occlusion GROUP BY ALL ORDER BY ALL").to_pandas()
    expected = reference(tiny_run, "occlusion").groupby(["method", "kernel"]).auc.mean().reset_index()
    assert np.allclose(answer.auc, expected.auc) and list(answer.method) == list(expected.method)


def test_uncommitted_parts_are_not_results(run_copy) -> None:
    """A crashed shard's part on disk (no marker) and a stray file are invisible."""
    (run_copy / "_commits/shard-1.json").unlink()
    part = run_copy / "occlusion/model=resnet34/dataset=synthetic"
    shutil.copy(part / "part-0.parquet", part / "part-77.parquet")
    results = open_results(str(run_copy))
    shards = set(results.sql("SELECT DISTINCT shard FROM occlusion").column("shard").to_pylist())
    assert shards == {0, 2} and results.count("occlusion") == 3 * len(METHODS) * 2  # images 0, 1 and 4
    assert not results.complete and "2 of 3 shards committed, 1 not run yet" in results.state()


def test_partition_values_stay_strings(tmp_path) -> None:
    """Hive partitioning would type a model called 1 as an integer; the views declare strings."""
    def tables(images, shard):
        value = lambda **k: 0.5  # noqa: E731
        return {"randomization": randomization_rows(images, shard, ["m"], [1], value, metrics=["ssim"])}

    out = fake_output(tmp_path / "out", shards=1, tables=tables, partition={"model": "1", "dataset": "2024"})
    results = open_results(str(out))
    types = dict(results.sql("SELECT column_name, column_type FROM (DESCRIBE randomization)").to_pandas().values)
    assert types["model"] == "VARCHAR" and types["dataset"] == "VARCHAR"
    assert results.table("randomization", model="1", dataset="2024").num_rows == 4
    assert results.sql("SELECT DISTINCT model FROM randomization").column("model").to_pylist() == ["1"]


@pytest.mark.parametrize("fmt", ["table", "csv", "json"])
def test_cli_formats(tiny_run, fmt, capsys) -> None:
    sql = "SELECT method, kernel, count(*) AS n, avg(auc) AS auc FROM occlusion GROUP BY ALL ORDER BY ALL"
    assert main(["query", str(tiny_run), sql, "--format", fmt]) == 0
    text = capsys.readouterr().out
    expected = reference(tiny_run, "occlusion").groupby(["method", "kernel"]).auc.agg(["count", "mean"]).reset_index()
    if fmt == "json":
        rows = json.loads(text)
        assert [r["method"] for r in rows] == list(expected.method)
        assert np.allclose([r["auc"] for r in rows], expected["mean"])
    elif fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        assert [int(r["n"]) for r in rows] == list(expected["count"])
        assert np.allclose([float(r["auc"]) for r in rows], expected["mean"])
    else:
        lines = text.splitlines()
        assert lines[0].split() == ["method", "kernel", "n", "auc"] and lines[-1] == f"({len(expected)} rows)"
        widths = {len(line) for line in lines[:-1]}
        assert len(widths) == 1  # aligned columns


def test_cli_table_with_filters_lists_and_blobs(tiny_run, capsys) -> None:
    assert main(["query", str(tiny_run), "--table", "maps", "--method", "noise", "--stage", "0", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 3 and all(r["method"] == "noise" and r["stage"] == 0 and r["seed"] is None for r in rows)
    assert rows[0]["shape"] == [32, 32] and isinstance(rows[0]["values"], str)  # base64
    assert main(["query", str(tiny_run), "--table", "randomization", "--stage", "1", "--max-rows", "5"]) == 0
    text = capsys.readouterr().out
    assert "first 5 shown" in text and "[fc]" in text
    assert main(["query", str(tiny_run), "--list"]) == 0
    assert "randomization" in capsys.readouterr().out


def test_cli_errors_are_messages_not_tracebacks(tiny_run, tmp_path, capsys) -> None:
    assert main(["query", str(tiny_run), "SELECT * FROM nope"]) == 2
    err = capsys.readouterr().err
    assert "nope" in err and "views of" in err and "randomization" in err and "Traceback" not in err
    assert main(["query", str(tiny_run), "--table", "occlusion", "--stage", "1"]) == 2
    assert "no column(s) ['stage']" in capsys.readouterr().err
    assert main(["query", str(tiny_run), "--table", "rank_agreement"]) == 2
    assert "benchmark aggregate" in capsys.readouterr().err
    assert main(["query", str(tmp_path), "SELECT 1"]) == 2
    assert "no manifest.json" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "absent"), "SELECT 1"]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture
def s3_server(monkeypatch):
    moto_server = pytest.importorskip("moto.server")
    boto3 = pytest.importorskip("boto3")
    for key, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    boto3.client("s3", endpoint_url=f"http://{host}:{port}").create_bucket(Bucket="bench")
    yield f"endpoint_override={host}:{port}&scheme=http&region=us-east-1"
    server.stop()


def test_s3_output_answers_like_the_local_one(tiny_run, s3_server, capsys) -> None:
    uri = f"s3://bench/runs/tiny?{s3_server}"
    store = OutputStore(uri)
    for path in tiny_run.rglob("*"):
        if path.is_file():
            store.write_bytes(path.relative_to(tiny_run).as_posix(), path.read_bytes())
    store.write_bytes("occlusion/model=resnet34/dataset=synthetic/part-9.parquet",  # uncommitted: ignored
                      (tiny_run / "occlusion/model=resnet34/dataset=synthetic/part-0.parquet").read_bytes())
    remote, local = open_results(uri), open_results(str(tiny_run))
    assert remote.store.object_store and remote.complete
    query = "SELECT method, stage, seed, avg(value) AS v, count(*) AS n FROM randomization GROUP BY ALL ORDER BY ALL"
    mine, theirs = remote.sql(query).to_pandas(), local.sql(query).to_pandas()
    assert mine.drop(columns="v").equals(theirs.drop(columns="v")) and np.allclose(mine.v, theirs.v, rtol=1e-12)
    assert remote.table("occlusion", method="noise", kernel=8).num_rows == IMAGES
    assert remote.sql("SELECT DISTINCT model FROM maps").column("model").to_pylist() == ["resnet34"]
    assert main(["aggregate", uri, "--no-progress", "--resamples", "200"]) == 0
    capsys.readouterr()
    assert main(["query", uri, "SELECT count(*) AS n FROM rank_agreement WHERE headline", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == [{"n": 1}]
