"""``benchmark query OUT "SQL"``: SQL over a run's tables and aggregates (each a view of its name).

Without SQL, ``--table NAME`` with ``--model/--dataset/--method/--stage/--seed`` filters reads one
table through the same statement builder as the Python API (``Results.table``).
"""

from __future__ import annotations

import argparse
import sys

from ..results.formatting import FORMATS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "query",
        help="SQL over a run's results (each table and aggregate is a view of its name)",
        description="Run SQL (DuckDB) over the committed results of a run. Views: randomization, occlusion, "
        "activations, logits, maps, errors, shards, and every aggregate written by `benchmark aggregate`.",
    )
    parser.add_argument("out", help="output URI of the run (folder, s3://bucket/prefix, …)")
    parser.add_argument("sql", nargs="?", help='SQL, e.g. "SELECT method, avg(auc) FROM occlusion GROUP BY method"')
    parser.add_argument("--table", help="read one table or aggregate instead of SQL (with the filters below)")
    for name in ("model", "dataset", "method"):
        parser.add_argument(f"--{name}", action="append", help=f"keep rows of this {name} (repeatable; with --table)")
    for name in ("stage", "seed"):
        parser.add_argument(f"--{name}", action="append", type=int, help=f"keep rows of this {name} (repeatable; with --table)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="aligned table (default), csv or json")
    parser.add_argument("--max-rows", type=int, default=200, help="rows shown in table format (0: all); csv/json are complete")
    parser.add_argument("--output", "-o", help="write to this file instead of stdout")
    parser.add_argument("--list", action="store_true", help="list the views and their row counts")
    parser.set_defaults(handler=query)


def query(args: argparse.Namespace) -> int:
    from ..cli.main import UserError
    from ..results.formatting import render, write_text
    from ..results.query import FILTERS, open_results

    results = open_results(args.out)
    filters = {name: getattr(args, name) for name in FILTERS}
    if args.list:
        rows = [f"{name:24s} {results.count(name):>10d} rows" for name in results.views()]
        write_text(results.state() + "\n" + "\n".join(rows) + "\n", args.output)
        return 0
    if args.sql and args.table:
        raise UserError("give either SQL or --table, not both")
    if args.sql:
        if any(value is not None for value in filters.values()):
            raise UserError("--model/--dataset/--method/--stage/--seed filter --table; put conditions in the SQL instead")
        table = results.sql(args.sql)
    elif args.table:
        table = results.table(args.table, **filters)
    else:
        raise UserError(f"give SQL or --table NAME; views of {args.out}: {', '.join(results.views())}")
    if not results.complete:
        print(f"note: {results.state()}; results are partial", file=sys.stderr)
    write_text(render(table, args.format, args.max_rows or None), args.output)
    return 0
