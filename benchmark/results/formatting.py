"""Query results as text: an aligned table for people, CSV and JSON for programs.

Lists stay lists (JSON arrays; in CSV a JSON array inside one cell), binary map values become
base64 in CSV/JSON and ``<N bytes>`` in the table, NaN and infinities become null in JSON
(which has no NaN), timestamps are ISO 8601.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import math
from typing import Any

from typing import TYPE_CHECKING

import pyarrow as pa

if TYPE_CHECKING:  # pandas is imported on use: the CLI imports this module for every command
    import pandas as pd

FORMATS = ("table", "csv", "json")


def render(table: pa.Table, fmt: str = "table", max_rows: int | None = None) -> str:
    if fmt == "json":
        return json.dumps([_json_row(row) for row in table.to_pylist()], indent=1, allow_nan=False) + "\n"
    if fmt == "csv":
        frame = _frame(table, _cell_csv)
        return frame.to_csv(index=False, lineterminator="\n")
    if fmt == "table":
        return _aligned(table, max_rows)
    raise ValueError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


def _aligned(table: pa.Table, max_rows: int | None) -> str:
    shown = table if not max_rows or table.num_rows <= max_rows else table.slice(0, max_rows)
    if table.num_columns == 0:
        return "(no columns)\n"
    frame = _frame(shown, _cell_text)
    text = frame.to_string(index=False, na_rep="null", float_format=lambda v: f"{v:.6g}") if len(frame) else (
        "  ".join(table.column_names)
    )
    footer = f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
    if shown.num_rows < table.num_rows:
        footer += f", first {shown.num_rows} shown; --max-rows 0 shows all"
    return f"{text}\n{footer})\n"


def _frame(table: pa.Table, convert) -> "pd.DataFrame":
    """A DataFrame whose nested/binary columns are already converted to strings."""
    import pandas as pd

    columns = {}
    for name, column in zip(table.column_names, table.columns):
        kind = column.type
        if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_struct(kind) or pa.types.is_binary(kind):
            columns[name] = pd.Series([convert(v) for v in column.to_pylist()], dtype=object)
        else:
            columns[name] = column.to_pandas()
    return pd.DataFrame(columns)


def _cell_text(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, list) and len(value) > 8:
        head = ", ".join(_short(v) for v in value[:6])
        return f"[{head}, … {len(value)} items]"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value) + "]"
    return str(value)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _cell_csv(value: Any) -> str | None:
    return None if value is None else json.dumps(_json_value(value), allow_nan=False)


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {key: _json_value(value) for key, value in row.items()}


def _json_value(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(v) for v in value]
    if isinstance(value, dict):
        return _json_row(value)
    return value


def write_text(text: str, path: str | None) -> None:
    """Print, or write to a file when a path is given."""
    if path is None:
        print(text, end="")
        return
    with io.open(path, "w", encoding="utf-8") as handle:
        handle.write(text)
