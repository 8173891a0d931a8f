"""The output location: a local/NFS folder or an object store, through ``pyarrow.fs``.

Writes are atomic at file level. Local: a dot-prefixed temporary file in the same folder, then
a rename. Object stores (``s3://``, ``gs://``): the whole file built in memory and sent in one
request, so it appears complete or not at all (S3: pyarrow's ``allow_delayed_open``, which sends
a file below its 10 MB part size as one PUT instead of a three-request multipart upload; a
larger file goes up in parts, and an upload that fails is aborted). A shard is visible to
readers only once its commit marker exists (``_commits/shard-<id>.json``), written after all
of the shard's files; ``cleanup.remove_uncommitted`` removes what an interrupted writer left.

Object-store URIs take pyarrow's options as query parameters, e.g. an S3-compatible server:
``s3://bucket/prefix?endpoint_override=host:9000&scheme=http&region=us-east-1``; the query
travels with the URI to every worker. Without it, pyarrow reads the standard variables
(``AWS_ENDPOINT_URL``, ``AWS_REGION``); credentials always come from the usual chain
(environment, ``~/.aws``, instance profile), never from the URI.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pyarrow as pa
import pyarrow.fs as pafs

COMMITS = "_commits"
FAILURES = "_failures"
MANIFEST = "manifest.json"
AGGREGATES = "aggregates"  # written by `benchmark aggregate` (and plot/report when missing)
FIGURES = "figures"  # `benchmark plot`
REPORT = "report.html"  # `benchmark report`


TEMPORARY_MARK = ".tmp-"  # in the names of local temporary files: .<name>.tmp-<hex>


def single_put_uri(uri: str) -> str:
    """An ``s3://`` URI with pyarrow's ``allow_delayed_open`` on (unless the URI sets it): a small
    file is then sent with one PutObject when it is closed, not as a multipart upload."""
    if not uri.startswith("s3://"):
        return uri
    base, _, query = uri.partition("?")
    options = dict(parse_qsl(query, keep_blank_values=True))
    options.setdefault("allow_delayed_open", "true")
    return f"{base}?{urlencode(options)}"


class OutputStore:
    def __init__(self, uri: str) -> None:
        base, _, query = uri.partition("?") if "://" in uri else (uri, "", "")  # the query: filesystem options
        self.uri = base.rstrip("/") or base
        self.options = dict(parse_qsl(query))
        if "://" in uri and not uri.startswith("file://"):
            self.fs, self.root = pafs.FileSystem.from_uri(single_put_uri(uri))
            self.object_store = True
        else:
            path = uri.removeprefix("file://")
            self.fs, self.root = pafs.LocalFileSystem(), os.path.abspath(path)
            self.object_store = False
        self.root = self.root.rstrip("/")

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}" if relative else self.root

    def display(self, relative: str = "") -> str:
        return f"{self.uri}/{relative}" if relative else self.uri

    # -- writing -----------------------------------------------------------------------------
    def write_bytes(self, relative: str, data: bytes) -> None:
        """Write a whole file atomically (see module docstring)."""
        target = self.path(relative)
        parent = target.rsplit("/", 1)[0]
        if self.object_store:  # no folders to create: one PUT of the whole object
            try:
                with self.fs.open_output_stream(target) as stream:
                    stream.write(data)
            except BaseException:
                from .s3 import abort_uploads

                abort_uploads(self, relative)  # a multipart upload that failed must not linger (S3 bills it)
                raise
            return
        self.fs.create_dir(parent, recursive=True)
        name = target.rsplit("/", 1)[1]
        temporary = f"{parent}/.{name}{TEMPORARY_MARK}{uuid.uuid4().hex}"
        with self.fs.open_output_stream(temporary) as stream:
            stream.write(data)
        self.fs.move(temporary, target)

    def write_json(self, relative: str, payload: Any) -> None:
        self.write_bytes(relative, json.dumps(payload, indent=2, sort_keys=True, default=str).encode())

    def delete(self, relative: str) -> None:
        try:
            self.fs.delete_file(self.path(relative))
        except FileNotFoundError:
            pass

    def delete_dir(self, relative: str) -> None:
        info = self.fs.get_file_info(self.path(relative))
        if info.type == pafs.FileType.Directory:
            self.fs.delete_dir(self.path(relative))

    # -- reading -----------------------------------------------------------------------------
    def exists(self, relative: str) -> bool:
        return self.fs.get_file_info(self.path(relative)).type != pafs.FileType.NotFound

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(relative)) as stream:
                return stream.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            if "not found" in str(error).lower() or "no such file" in str(error).lower():
                return None
            raise

    def read_json(self, relative: str) -> Any | None:
        data = self.read_bytes(relative)
        return None if data is None else json.loads(data)

    def list_files(self, relative: str, hidden: bool = False) -> list[str]:
        """Relative paths of the files below ``relative`` (recursive), hidden files excluded unless asked."""
        base = self.path(relative)
        if self.fs.get_file_info(base).type == pafs.FileType.NotFound:
            return []
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        found = []
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            name = info.path.rsplit("/", 1)[-1]
            if name.startswith(".") and not hidden:
                continue
            found.append(info.path[len(self.root) + 1 :])
        return sorted(found)

    def table_reader_path(self, relative: str) -> str:
        """Path for ``pyarrow.dataset``/``pyarrow.parquet`` together with ``self.fs``."""
        return self.path(relative)

    def open_buffer(self, relative: str) -> pa.Buffer:
        data = self.read_bytes(relative)
        if data is None:
            raise FileNotFoundError(self.display(relative))
        return pa.py_buffer(data)
