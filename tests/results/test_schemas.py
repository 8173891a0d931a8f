"""Every table, written through the real code path, matches its schema in results_schema/;
the manifest matches its JSON Schema; readers refuse other schema versions, saying what to do."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmark.engine.manifest import check_resume
from benchmark.engine.shard import error_rows, shard_failure_rows
from benchmark.results import (
    OutputStore, SchemaError, SchemaVersionError, ShardWriter, aggregate_names, aggregate_schema, committed_files,
    read_table, table_names, table_schema, validate_manifest,
)
from benchmark.results.aggregate import compute_aggregates
from benchmark.results.statistics import BootstrapSettings
from benchmark.results.maps import decode_map
from benchmark.results.query import open_results
from benchmark.data import LoadError

from .conftest import METHODS, SAVED, SEEDS, STAGES
from .fakes import activation_rows, fake_output, image_ids, logit_rows


def _assert_files_match(store: OutputStore, table: str) -> int:
    schema = table_schema(table)
    files = committed_files(store, table)
    for relative in files:
        stored = pq.read_schema(store.path(relative))
        assert stored.names == schema.file_schema.names, relative
        for field in schema.file_schema:
            assert stored.field(field.name).type.equals(field.type), (relative, field.name)
        assert stored.metadata[b"schema_version"] == str(schema.version).encode()
    return len(files)


def test_run_tables_match_their_schemas(tiny_run) -> None:
    store = OutputStore(str(tiny_run))
    for table in ("randomization", "occlusion", "maps", "shards"):
        assert _assert_files_match(store, table) > 0, table
    frame = open_results(str(tiny_run)).sql("DESCRIBE randomization").to_pandas().set_index("column_name")
    assert frame.loc["model", "column_type"] == "VARCHAR" and frame.loc["stage", "column_type"] == "INTEGER"


def test_error_activation_and_logit_tables_match_their_schemas(tmp_path) -> None:
    """Tables the tiny run does not produce, written by the writers the engine uses."""
    def tables(images, shard):
        return {
            "activations": activation_rows(images, shard, layers=3, nonpositive=lambda layer, image: 0.5),
            "logits": logit_rows(images, shard, stages=[1, 2]),
            "errors": error_rows([LoadError(images[0], "/data/x.jpg", "truncated file")], shard, 1),
        }

    out = fake_output(tmp_path / "out", tables=tables)
    store = OutputStore(str(out))
    writer = ShardWriter(store, {"model": "resnet34", "dataset": "synthetic"})
    writer.record_failure(5, shard_failure_rows(5, 3, "RuntimeError: boom"), {"spec_hash": "x"})
    for table in ("activations", "logits", "errors", "shards"):
        assert _assert_files_match(store, table) > 0, table
    errors = read_table(store, "errors").to_pandas()
    assert sorted(errors["where"]) == ["load", "load", "shard"]


def test_the_writer_stamps_the_shard_and_refuses_rows_of_another_shard(tmp_path) -> None:
    store = OutputStore(str(tmp_path))
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    rows = activation_rows(image_ids(3, 2), 3, layers=1, nonpositive=lambda layer, image: 0.1).drop_columns(["shard"])
    writer.commit(3, {"activations": rows}, {})  # experiments write no shard column
    written = read_table(store, "activations").to_pandas()
    assert (written.shard == 3).all() and (written.model == "m").all() and len(written) == 2
    with pytest.raises(SchemaError, match="rows of shards \\[3\\] written as shard 4"):
        writer.commit(4, {"activations": activation_rows(image_ids(3, 2), 3, layers=1, nonpositive=lambda layer, image: 0.1)}, {})


def test_writers_reject_rows_that_break_the_schema(tmp_path) -> None:
    store = OutputStore(str(tmp_path))
    writer = ShardWriter(store, {"model": "m", "dataset": "d"})
    rows = activation_rows(image_ids(0, 2), 0, layers=1, nonpositive=lambda layer, image: 0.1)
    with pytest.raises(SchemaError, match="missing columns \\['nonpositive'\\]"):
        writer.commit(0, {"activations": rows.drop_columns(["nonpositive"])}, {})
    with pytest.raises(SchemaError, match="column 'layer_index'"):
        writer.commit(0, {"activations": rows.set_column(rows.schema.get_field_index("layer_index"), "layer_index",
                                                          pa.array(["a", "b"]))}, {})


def test_every_declared_schema_parses() -> None:
    assert {"randomization", "occlusion", "activations", "logits", "maps", "errors", "shards"} <= set(table_names())
    for name in table_names():
        schema = table_schema(name)
        assert schema.partition == ("model", "dataset") and schema.version == 1
        assert all(schema.descriptions[f.name] for f in schema.arrow)
    for name in aggregate_names():
        schema = aggregate_schema(name)
        assert schema.partition == () and all(schema.descriptions[f.name] for f in schema.arrow)


def test_saved_maps_are_the_maps_the_metrics_compared(tiny_run) -> None:
    """Recompute the MSE of second-moment normalized maps from the saved float16 maps and find
    the value of the randomization table (an independent check of image/method/seed/stage)."""
    results = open_results(str(tiny_run))
    maps = results.frame("maps")
    assert sorted(maps[maps.kind == "input"].image_id) == [f"synthetic-{i:05d}" for i in range(SAVED)]  # the first N
    assert len(maps) == SAVED * (1 + len(METHODS) * (1 + len(SEEDS) * len(STAGES)))
    table = results.frame("randomization", metric="mse", normalization="second_moment", where="NOT absolute")
    def normalized(row) -> np.ndarray:
        values = decode_map(row["values"], list(row["shape"]), row["scale"]).astype(np.float64)
        assert values.shape == (32, 32)
        return values / np.sqrt(np.mean(values**2))

    stored = maps[maps.kind == "map"]
    checked = 0
    for _, row in stored[stored.stage > 0].iterrows():
        reference = stored[(stored.image_id == row.image_id) & (stored.method == row.method) & (stored.stage == 0)]
        assert len(reference) == 1 and reference.seed.isna().all()
        mse = float(np.mean((normalized(reference.iloc[0]) - normalized(row)) ** 2))
        expected = table[(table.image_id == row.image_id) & (table.method == row.method) & (table.seed == row.seed)
                         & (table.stage == row.stage)]["value"]
        assert len(expected) == 1
        assert mse == pytest.approx(float(expected.iloc[0]), rel=2e-2, abs=2e-3)
        checked += 1
    assert checked == SAVED * len(METHODS) * len(SEEDS) * len(STAGES)
    pixels = maps[maps.kind == "input"].iloc[0]
    image = decode_map(pixels["values"], list(pixels["shape"]), pixels["scale"])
    assert image.shape == (3, 32, 32) and 0 <= image.min() and image.max() <= 1.0 + 1e-3


def test_manifest_matches_its_schema_and_broken_ones_are_named(tiny_run) -> None:
    manifest = json.loads((tiny_run / "manifest.json").read_text())
    validate_manifest(manifest)
    with pytest.raises(SchemaError, match="spec_hash"):
        validate_manifest({k: v for k, v in manifest.items() if k != "spec_hash"})
    with pytest.raises(SchemaError, match="shard_plan.shards.0.start"):
        broken = json.loads(json.dumps(manifest))
        broken["shard_plan"]["shards"][0]["start"] = "zero"
        validate_manifest(broken)


@pytest.mark.parametrize("version, words", [(0, ["older", "v0", "recompute", "--new-run"]), (2, ["newer", "v2", "upgrade"])])
def test_other_manifest_versions_are_refused_with_advice(run_copy, version, words, capsys) -> None:
    from benchmark.cli.main import main

    manifest = json.loads((run_copy / "manifest.json").read_text())
    manifest["schema_version"] = version
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SchemaVersionError) as error:
        open_results(str(run_copy))
    assert all(word in str(error.value) for word in words), str(error.value)
    assert main(["query", str(run_copy), "SELECT 1"]) == 2
    assert "results schema v" in capsys.readouterr().err
    from benchmark.config import validate_job

    from .conftest import RUN_JOB
    with pytest.raises(SchemaVersionError):  # a resume into it is refused too
        check_resume(manifest, validate_job(RUN_JOB))


def test_other_versions_in_markers_and_files_are_refused(run_copy) -> None:
    marker = json.loads((run_copy / "_commits/shard-1.json").read_text())
    marker["schema_version"] = 3
    (run_copy / "_commits/shard-1.json").write_text(json.dumps(marker))
    with pytest.raises(SchemaVersionError, match="shard-1.json was written with results schema v3"):
        open_results(str(run_copy))
    marker["schema_version"] = 1
    (run_copy / "_commits/shard-1.json").write_text(json.dumps(marker))
    part = run_copy / "occlusion/model=resnet34/dataset=synthetic/part-1.parquet"
    table = pq.read_table(part)
    pq.write_table(table.replace_schema_metadata({b"table": b"occlusion", b"schema_version": b"2"}), part)
    with pytest.raises(SchemaVersionError, match="part-1.parquet was written with results schema v2, newer"):
        read_table(OutputStore(str(run_copy)), "occlusion")


def test_occlusion_files_written_before_order_and_imputer_read_as_mif_and_blur(run_copy) -> None:
    """An output of an earlier release has no order/imputer columns: the reader, the SQL views and the
    aggregates see them at their declared defaults, the paper's protocol."""
    files = sorted(run_copy.glob("occlusion/**/*.parquet"))
    assert len(files) == 3

    def make_old(paths) -> None:
        for path in paths:
            pq.write_table(pq.read_table(path).drop_columns(["order", "imputer"]), path)

    make_old(files[:2])  # a resumed output: old and new files side by side
    mixed = open_results(str(run_copy)).sql('SELECT "order", imputer, count(*) AS n FROM occlusion GROUP BY ALL')
    assert mixed.to_pylist() == [{"order": "mif", "imputer": "blur", "n": 5 * 3 * 2}]  # images x methods x kernels
    make_old(files[2:])
    assert "order" not in pq.read_table(files[0]).column_names
    store = OutputStore(str(run_copy))
    table = read_table(store, "occlusion")
    assert set(table.column("order").to_pylist()) == {"mif"} and set(table.column("imputer").to_pylist()) == {"blur"}
    assert table.schema.field("order").nullable is False
    results = open_results(str(run_copy))
    assert results.sql('SELECT DISTINCT "order", imputer FROM occlusion').to_pylist() == [{"order": "mif", "imputer": "blur"}]
    scores = compute_aggregates(results, BootstrapSettings(resamples=50))["occlusion_scores"].to_pandas()
    assert set(scores["order"]) == {"mif"} and set(scores.score) == {"auc", "aopc"}  # no srg without lif
