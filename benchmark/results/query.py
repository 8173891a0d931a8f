"""Reading a run's results: each table (and each aggregate) is a DuckDB view of its own name.

Only committed files are results (a crashed shard may leave parts on disk that no marker
lists), so the views are built from the commit markers, never from a glob. Partition columns
(``model``, ``dataset``) are declared as strings instead of letting hive partitioning guess
their type (a model called ``1`` would otherwise become an integer). Local outputs are read
by DuckDB's own Parquet reader; object stores (``s3://``, ``gs://``) through ``pyarrow.fs``,
the same filesystem the writers use (DuckDB's httpfs extension needs a download).

``open_results(out)`` is the one entry point of the CLI commands ``query``, ``aggregate``,
``plot`` and ``report`` and of the Python API::

    results = open_results("runs/smoke")
    results.frame("randomization", method="gradient", stage=[1, 2], metric="ssim")
    results.sql("SELECT method, avg(auc) FROM occlusion GROUP BY method")        # Arrow
    results.sql_frame("SELECT method, avg(auc) FROM occlusion GROUP BY method")  # pandas
    results.maps(method="gradient", stage=0)  # saved maps, decoded: numpy [H, W] with their keys
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Iterable, Sequence

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from .maps import decode_map
from .reader import committed_files, committed_shards, failed_shards, run_spec_hashes
from .schema import (
    AGGREGATES, TableSchema, aggregate_names, aggregate_schema, check_version, metadata_version, table_names,
    table_schema,
)
from .store import MANIFEST, OutputStore

# Filters of the Python API and of ``benchmark query --table`` (any other column works too).
FILTERS = ("model", "dataset", "method", "stage", "seed")
MAP_KEYS = ("model", "dataset", "image_id", "experiment", "kind", "method", "reduction", "seed", "mode", "stage",
            "component", "target")


@dataclass(frozen=True)
class SavedMap:
    """One decoded row of the ``maps`` table: its keys and the array, ready to plot.

    ``array`` is float32: a map [H, W] (signed, in the method's units), or for ``kind == 'input'`` the
    image [H, W, 3] in [0, 1], channels last, as ``captum.attr.visualization.visualize_image_attr``
    (``original_image``) and ``zennit.image.imgify`` take them."""

    keys: dict[str, Any]
    array: np.ndarray

    def __getattr__(self, name: str) -> Any:
        keys = self.__dict__.get("keys", {})
        if name in keys:
            return keys[name]
        raise AttributeError(name)


class ResultsError(Exception):
    """An output that cannot answer the request (no run, nothing committed, no such table):
    the message says what is there and what to do; the CLI prints it without a traceback."""


@dataclass
class Results:
    """A run's committed results. Cheap to open; the DuckDB views are built on first use."""

    store: OutputStore
    manifest: dict[str, Any]
    committed: dict[int, dict]
    failed: dict[int, dict]

    # -- what the output holds ---------------------------------------------------------------
    @property
    def out(self) -> str:
        return self.store.uri

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", "?"))

    @property
    def planned(self) -> list[int]:
        return [s["shard"] for s in self.manifest.get("shard_plan", {}).get("shards", [])]

    @property
    def missing(self) -> list[int]:
        return [s for s in self.planned if s not in self.committed and s not in self.failed]

    @property
    def complete(self) -> bool:
        return bool(self.planned) and all(s in self.committed for s in self.planned)

    def state(self) -> str:
        """One line: how much of the run is committed."""
        line = f"run '{self.name}' in {self.out}: {len(self.committed)} of {len(self.planned)} shards committed"
        if self.failed:
            line += f", {len(self.failed)} failed"
        if self.missing:
            line += f", {len(self.missing)} not run yet"
        return line

    def require_committed(self, what: str) -> None:
        """Refuse work that needs results when no shard is committed, saying why and what to do."""
        if self.committed:
            return
        hint = (
            f"{len(self.failed)} shard(s) failed: see `benchmark status {self.out}`, fix the cause and rerun `benchmark run`"
            if self.failed
            else f"run `benchmark run JOB.yaml --out {self.out}` (the same command resumes) and try again"
        )
        raise ResultsError(f"{self.state()}: nothing to {what} yet; {hint}")

    def files(self, table: str) -> list[str]:
        """Committed files of a run table (``errors`` also lists those of failed shards)."""
        markers = {**self.failed, **self.committed} if table == "errors" else self.committed
        return committed_files(self.store, table, markers)

    def aggregate_files(self) -> dict[str, str]:
        """Aggregate name -> file, for the aggregates ``benchmark aggregate`` has written."""
        known = set(aggregate_names())
        found = {}
        for relative in self.store.list_files(AGGREGATES):
            stem = relative.rsplit("/", 1)[-1].removesuffix(".parquet")
            if relative.endswith(".parquet") and stem in known:
                found[stem] = relative
        return found

    # -- SQL -----------------------------------------------------------------------------------
    @cached_property
    def connection(self) -> duckdb.DuckDBPyConnection:
        connection = duckdb.connect()
        for name in table_names():
            _create_view(connection, self.store, name, table_schema(name), self.files(name))
        for name, relative in self.aggregate_files().items():
            _create_view(connection, self.store, name, aggregate_schema(name), [relative], partitioned=False)
        return connection

    def views(self) -> list[str]:
        """Every name a query can use: the run's tables, then the aggregates written so far."""
        return table_names() + sorted(self.aggregate_files())

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pa.Table:
        """Run SQL over the views; DuckDB errors become ``ResultsError`` naming the views."""
        try:
            relation = self.connection.sql(query, params=list(params or []))
            return relation.to_arrow_table() if relation is not None else pa.table({})
        except duckdb.Error as error:
            raise ResultsError(f"{error}\n  views of {self.out}: {', '.join(self.views())}") from None

    def sql_frame(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """``sql`` as a pandas DataFrame."""
        return self.sql(query, params).to_pandas()

    def maps(self, kind: str | None = "map", **filters: Any) -> list[SavedMap]:
        """The saved maps (``runtime.save_maps``, the experiments' ``save_maps``) matching the filters,
        decoded: e.g. ``maps(method="gradient", stage=0)``, ``maps(kind="input")`` for the images.
        Filters are columns of the ``maps`` table (scalar or list; None: any). Stage 0 is the trained
        model (seed null)."""
        rows = self.table("maps", order_by=["image_id", "experiment", "kind", "method", "stage", "seed", "component"],
                          kind=kind, **filters).to_pylist()  # Arrow keeps integer keys and nulls as they are
        found = []
        for row in rows:
            array = decode_map(row["values"], list(row["shape"]), row["scale"])
            if row["kind"] == "input":
                array = np.ascontiguousarray(np.transpose(array, (1, 2, 0)))
            found.append(SavedMap({key: row[key] for key in MAP_KEYS}, array))
        return found

    def table(
        self,
        name: str,
        columns: Sequence[str] | None = None,
        where: str | None = None,
        order_by: Sequence[str] | None = None,
        **filters: Any,
    ) -> pa.Table:
        """Rows of one table or aggregate, e.g. ``table("randomization", method="lrp_epsilon_plus_flat",
        stage=[1, 2], seed=0)``. A filter value may be a scalar or a list; None means no filter."""
        query, params = select_statement(name, self.columns(name), columns, filters, where, order_by)
        return self.sql(query, params)

    def frame(self, name: str, columns: Sequence[str] | None = None, where: str | None = None,
              order_by: Sequence[str] | None = None, **filters: Any) -> pd.DataFrame:
        """``table`` as a pandas DataFrame."""
        return self.table(name, columns, where, order_by, **filters).to_pandas()

    def columns(self, name: str) -> list[str]:
        if name in table_names():
            return table_schema(name).arrow.names
        if name in self.aggregate_files():
            return aggregate_schema(name).arrow.names
        if name in aggregate_names():
            raise ResultsError(f"{self.out}: aggregate '{name}' has not been computed; run `benchmark aggregate {self.out}`")
        raise ResultsError(f"{self.out}: no table or aggregate '{name}'; available: {', '.join(self.views())}")

    def count(self, name: str) -> int:
        return int(self.sql(f'SELECT count(*) AS n FROM "{name}"').column("n")[0].as_py())

    # -- aggregates ------------------------------------------------------------------------------
    def aggregate(self, name: str) -> pa.Table | None:
        """A written aggregate table (schema-checked), or None when it has not been computed."""
        relative = self.aggregate_files().get(name)
        if relative is None:
            return None
        table = pq.read_table(io.BytesIO(self.store.read_bytes(relative) or b""))
        found = metadata_version(table.schema.metadata)
        if found is not None:
            check_version(found, self.store.display(relative))
        return table.cast(aggregate_schema(name).arrow)


def open_results(out: str | OutputStore) -> Results:
    """Open an output folder/URI (or an open store: its connection settings kept); a clear
    ``ResultsError`` when it is not a run's output."""
    store = out if isinstance(out, OutputStore) else OutputStore(out)
    out = store.uri
    manifest = store.read_json(MANIFEST)
    if manifest is None:
        if not store.exists(""):
            raise ResultsError(f"{out} does not exist; pass the --out of a `benchmark run`")
        raise ResultsError(
            f"{out}: no {MANIFEST}; this is not the output of a benchmark run, or the run has not started "
            f"(start it with `benchmark run JOB.yaml --out {out}`)"
        )
    check_version(manifest.get("schema_version"), store.display(MANIFEST), manifest.get("versions", {}).get("benchmark"))
    hashes = run_spec_hashes(manifest)
    committed = {s: m for s, m in committed_shards(store).items() if m.get("spec_hash") in hashes}
    failed = {s: m for s, m in failed_shards(store).items() if s not in committed}
    return Results(store, manifest, committed, failed)


# -- building blocks shared by the API and the CLI ------------------------------------------------
def select_statement(
    name: str,
    available: Sequence[str],
    columns: Sequence[str] | None = None,
    filters: dict[str, Any] | None = None,
    where: str | None = None,
    order_by: Sequence[str] | None = None,
) -> tuple[str, list[Any]]:
    """``SELECT … FROM name WHERE …`` with parameters; unknown columns are errors naming the known ones."""
    wanted = list(columns or available)
    unknown = [c for c in [*wanted, *(k for k, v in (filters or {}).items() if v is not None), *(order_by or [])]
               if c not in available]
    if unknown:
        raise ResultsError(f"'{name}' has no column(s) {unknown}; its columns: {', '.join(available)}")
    clauses, params = [], []
    for column, value in (filters or {}).items():
        if value is None:
            continue
        values = list(value) if isinstance(value, (list, tuple, set, frozenset)) else [value]
        if not values:
            clauses.append("false")
            continue
        clauses.append(f"{_quote(column)} IN ({', '.join('?' for _ in values)})")
        params.extend(values)
    if where:
        clauses.append(f"({where})")
    query = f"SELECT {', '.join(_quote(c) for c in wanted)} FROM {_quote(name)}"
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    if order_by:
        query += " ORDER BY " + ", ".join(_quote(c) for c in order_by)
    return query, params


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _create_view(
    connection: duckdb.DuckDBPyConnection,
    store: OutputStore,
    name: str,
    schema: TableSchema,
    files: Iterable[str],
    partitioned: bool = True,
) -> None:
    files = list(files)
    if not files:
        source = f"__empty_{name}"
        connection.register(source, schema.arrow.empty_table())
    elif not store.object_store and not any(c in store.root for c in "*?[]{}"):  # DuckDB would glob those
        paths = ", ".join(_literal(store.path(f)) for f in files)
        options = ""
        if partitioned and schema.partition:
            types = ", ".join(f"{_literal(k)}: 'VARCHAR'" for k in schema.partition)
            options = f", hive_partitioning = true, hive_types = {{{types}}}, hive_types_autocast = false"
        if schema.defaults:
            options += ", union_by_name = true"
        source = f"read_parquet([{paths}]{options})"
    else:
        source = f"__dataset_{name}"
        partitioning = None
        if partitioned and schema.partition:
            partitioning = ds.partitioning(pa.schema([(k, pa.string()) for k in schema.partition]), flavor="hive")
        dataset = ds.dataset(
            [store.path(f) for f in files],
            schema=schema.arrow.remove_metadata(),
            format="parquet",
            filesystem=store.fs,
            partitioning=partitioning,
            partition_base_dir=store.path(name) if partitioning else None,
        )
        connection.register(source, dataset)
    columns = ", ".join(_quote(c) for c in schema.arrow.names)
    if schema.defaults:  # files written before a column existed: its declared default
        present = {row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
        columns = ", ".join(
            _quote(c) if c not in schema.defaults
            else f"coalesce({_quote(c)}, {_literal(str(schema.defaults[c]))}) AS {_quote(c)}" if c in present
            else f"{_literal(str(schema.defaults[c]))} AS {_quote(c)}"
            for c in schema.arrow.names)
    connection.execute(f"CREATE OR REPLACE VIEW {_quote(name)} AS SELECT {columns} FROM {source}")
