"""Removing what interrupted writers left behind, so that a plain glob sees only committed shards.

A worker that dies between writing a shard's files and its commit marker leaves part files no
marker lists; one killed mid-write leaves a dot-prefixed temporary file (local) or an incomplete
multipart upload (S3, billed until aborted). Readers of this package never see them (they read
through the markers), but ``pyarrow.dataset`` or DuckDB globbing ``<out>/<table>/**/*.parquet``
would. The driver runs ``remove_uncommitted`` while it holds the output's lease, before it
dispatches shards (a resume) and after the last one returned, when no writer of this output can
be running.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .reader import committed_shards, failed_shards
from .s3 import abort_uploads
from .store import TEMPORARY_MARK, OutputStore
from .schema import table_names


@dataclass
class Removed:
    parts: list[str] = field(default_factory=list)  # part files of uncommitted shards
    temporary: list[str] = field(default_factory=list)  # dot-prefixed temporary files
    uploads: int = 0  # incomplete multipart uploads aborted

    def __bool__(self) -> bool:
        return bool(self.parts or self.temporary or self.uploads)

    def describe(self) -> str:
        return (f"removed what interrupted writers left: {len(self.parts)} part files of uncommitted shards, "
                f"{len(self.temporary)} temporary files, {self.uploads} incomplete uploads")

    def counts(self) -> dict[str, int]:
        return {"parts": len(self.parts), "temporary": len(self.temporary), "uploads": self.uploads}


def is_temporary(relative: str) -> bool:
    name = relative.rsplit("/", 1)[-1]
    return name.startswith(".") and TEMPORARY_MARK in name


def remove_uncommitted(store: OutputStore, tables: list[str] | None = None) -> Removed:
    """Delete part files no commit or failure marker lists, stale temporary files and incomplete uploads."""
    tables = table_names() if tables is None else tables
    markers = [*committed_shards(store).values(), *failed_shards(store).values()]
    listed = {entry["path"] for marker in markers for entry in marker.get("files", {}).values()}
    removed = Removed()
    for relative in store.list_files("", hidden=True):
        top = relative.split("/", 1)[0]
        name = relative.rsplit("/", 1)[-1]
        if is_temporary(relative):
            removed.temporary.append(relative)
        elif top in tables and name.startswith("part-") and name.endswith(".parquet") and relative not in listed:
            removed.parts.append(relative)
        else:
            continue
        store.delete(relative)
    removed.uploads = abort_uploads(store)
    return removed
