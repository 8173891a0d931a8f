"""What ``pyarrow.fs`` cannot do on S3, through boto3 when it is installed: list and abort
incomplete multipart uploads, and conditional writes (``If-None-Match`` / ``If-Match``) for the
output's lease. Without boto3 (or on other object stores) these return None / do nothing, and
callers fall back to what pyarrow offers.

The client is configured like the store's pyarrow filesystem: ``endpoint_override`` and
``scheme`` of the URI's query (else ``AWS_ENDPOINT_URL``, which boto3 reads itself), its
``region``, and credentials from the usual AWS chain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import OutputStore


@dataclass(frozen=True)
class S3Location:
    client: Any
    bucket: str
    prefix: str  # the output's key prefix, no trailing slash

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative


def s3_location(store: "OutputStore") -> S3Location | None:
    """A boto3 client for the store's bucket, or None (not S3, or boto3 not installed)."""
    if not store.object_store or not store.uri.startswith("s3://"):
        return None
    try:
        import boto3
    except ImportError:
        return None
    options = store.options
    endpoint = options.get("endpoint_override")
    if endpoint and "://" not in endpoint:
        endpoint = f"{options.get('scheme', 'https')}://{endpoint}"
    client = boto3.client("s3", endpoint_url=endpoint or None, region_name=options.get("region") or None)
    bucket, _, prefix = store.root.partition("/")
    return S3Location(client, bucket, prefix.strip("/"))


def incomplete_uploads(location: S3Location, relative: str = "") -> list[dict[str, Any]]:
    """Multipart uploads begun and never completed or aborted below ``relative``."""
    prefix = location.key(relative) if relative else (f"{location.prefix}/" if location.prefix else "")
    found, pages = [], location.client.get_paginator("list_multipart_uploads")
    for page in pages.paginate(Bucket=location.bucket, Prefix=prefix):
        found.extend(page.get("Uploads", []))
    return found


def abort_uploads(store: "OutputStore", relative: str = "") -> int:
    """Abort the incomplete multipart uploads of one file (or of the whole output); how many."""
    location = s3_location(store)
    if location is None:
        return 0
    aborted = 0
    try:
        for upload in incomplete_uploads(location, relative):
            if relative and upload["Key"] != location.key(relative):
                continue
            location.client.abort_multipart_upload(Bucket=location.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    except Exception:  # best effort: the resume's cleanup lists them again
        return aborted
    return aborted


def precondition_failed(error: Exception) -> bool:
    """True for S3's answer to a failed conditional write (412; 409 when two race)."""
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)
