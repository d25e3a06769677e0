"""The MinIO SDK's single-request S3 calls, which it keeps private: the one module that calls them.

The pinned ``minio`` (:data:`PINNED_VERSION`, as in pyproject.toml) uploads an object only whole:
``put_object`` reads a stream, copies each part out of it and sends the parts from its own thread
pool, aborting on its own terms. The storage service drives an upload request by request instead, so
that it decides how many parts are in flight (which bounds its memory), reuses the buffers parts are
sent from, and aborts an unfinished upload when its caller goes away. The SDK has a method per S3
request for that, but private: ``_put_object``, ``_create_multipart_upload``, ``_upload_part``,
``_complete_multipart_upload`` and ``_abort_multipart_upload`` (and ``_list_multipart_uploads``,
which the tests use to find uploads left behind). They are called here and nowhere else;
``tests/unit/runtime/test_dependency_contracts.py`` fails when the installed minio is not the pinned
version or one of these methods changed its parameters. Calls are blocking: run them in a thread.
"""

from __future__ import annotations

from minio import Minio
from minio.datatypes import ListMultipartUploadsResult, Part
from minio.helpers import DictType

__all__ = [
    "PINNED_VERSION",
    "PRIVATE_METHODS",
    "abort_multipart_upload",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_multipart_uploads",
    "put_object",
    "upload_part",
]

PINNED_VERSION = "7.2.20"
"""The minio release these calls were written against (pyproject.toml pins the same)."""

PRIVATE_METHODS: dict[str, tuple[str, ...]] = {
    "_put_object": ("bucket_name", "object_name", "data", "headers", "query_params"),
    "_create_multipart_upload": ("bucket_name", "object_name", "headers"),
    "_upload_part": ("bucket_name", "object_name", "data", "headers", "upload_id", "part_number"),
    "_complete_multipart_upload": ("bucket_name", "object_name", "upload_id", "parts", "ssec"),
    "_abort_multipart_upload": ("bucket_name", "object_name", "upload_id"),
    "_list_multipart_uploads": (
        "bucket_name",
        "delimiter",
        "encoding_type",
        "key_marker",
        "max_uploads",
        "prefix",
        "upload_id_marker",
        "extra_headers",
        "extra_query_params",
    ),
}
"""Each private ``Minio`` method used here and its parameters (after ``self``) in the pinned version."""


def put_object(client: Minio, bucket: str, key: str, data: bytes, headers: DictType) -> None:
    """Stores ``data`` under ``key`` with one PUT request carrying ``headers``."""
    client._put_object(bucket, key, data, headers)


def create_multipart_upload(client: Minio, bucket: str, key: str, headers: DictType) -> str:
    """Begins a multipart upload of ``key`` whose object will carry ``headers``; returns its upload id."""
    return client._create_multipart_upload(bucket, key, headers)


def upload_part(client: Minio, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> Part:
    """Sends part ``number`` (from 1) of an upload; the SDK hashes and sends any bytes-like ``data``."""
    return Part(number, client._upload_part(bucket, key, data, None, upload_id, number))


def complete_multipart_upload(
    client: Minio, bucket: str, key: str, upload_id: str, parts: list[Part]
) -> None:
    """Joins the sent ``parts`` (in order) into the object ``key``."""
    client._complete_multipart_upload(bucket, key, upload_id, parts)


def abort_multipart_upload(client: Minio, bucket: str, key: str, upload_id: str) -> None:
    """Discards an unfinished upload and the parts S3 holds for it."""
    client._abort_multipart_upload(bucket, key, upload_id)


def list_multipart_uploads(client: Minio, bucket: str) -> ListMultipartUploadsResult:
    """The multipart uploads of ``bucket`` begun and neither completed nor aborted (first page)."""
    return client._list_multipart_uploads(bucket)
