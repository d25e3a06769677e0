"""The one wrapper around the blocking MinIO client: calls run in threads, errors become domain errors.

Only S3 features that SeaweedFS, MinIO and AWS S3 share are used: PUT, multipart upload, HEAD, DELETE,
bucket HEAD/PUT and presigned GET. Multipart uploads are driven request by request so that the caller
decides how many parts are in flight and how an unfinished upload is aborted; the SDK keeps its
per-request methods private, so they are called through :mod:`assetgen_storage.minio_internals`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar, cast
from urllib.parse import quote, urlsplit

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException, S3Error, ServerError
from minio.helpers import DictType

from assetgen_runtime.errors import AssetGenError, NotFound, Unavailable
from assetgen_storage import minio_internals
from assetgen_storage.settings import StorageSettings

__all__ = ["CACHE_CONTROL", "MIN_PART_BYTES", "Bucket", "ObjectInfo", "parse_endpoint"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

CACHE_CONTROL = "public, max-age=31536000, immutable"
"""Keys are never reused, so a stored object never changes: caches may keep it for a year."""

MIN_PART_BYTES = 5 * 1024 * 1024
"""The smallest part S3 accepts in a multipart upload (all but the last part)."""

SHA256_METADATA = "sha256"
_MISSING_CODES = frozenset({"NoSuchKey", "NotFound", "ResourceNotFound"})
_BUCKET_TAKEN_CODES = frozenset({"BucketAlreadyOwnedByYou"})
_S3_FAILURES = (urllib3.exceptions.HTTPError, ServerError, OSError)


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 knows about a stored object; ``sha256`` is empty when unknown (stored in several parts)."""

    key: str
    content_type: str
    size_bytes: int
    sha256: str


def parse_endpoint(url: str, *, setting: str = "ASSETGEN_S3_ENDPOINT") -> tuple[str, bool]:
    """(host:port, secure) from an endpoint URL such as http://127.0.0.1:8333."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"{setting} must be an http(s) URL without a path, got {url!r}")
    return parts.netloc, parts.scheme == "https"


def _http_client(settings: StorageSettings) -> urllib3.PoolManager:
    # Bounded tries with exponential backoff (0.5 s, 1 s, 2 s, 4 s) for connection failures and
    # 5xx answers; uploads send parts as bytes, so a retried part is re-sent whole.
    retries = urllib3.Retry(
        total=max(settings.s3_attempts - 1, 0),
        backoff_factor=0.25,
        backoff_max=4.0,
        status_forcelist=(500, 502, 503, 504),
    )
    timeout = urllib3.Timeout(connect=min(5.0, settings.s3_timeout_seconds), read=settings.s3_timeout_seconds)
    return urllib3.PoolManager(timeout=timeout, retries=retries, maxsize=16)


class Bucket:
    """The service's bucket: puts, multipart uploads, stat, listing, delete and read URLs."""

    def __init__(self, settings: StorageSettings) -> None:
        host, secure = parse_endpoint(settings.s3_endpoint)
        if settings.part_size_bytes < MIN_PART_BYTES:
            raise ValueError(f"ASSETGEN_S3_PART_SIZE_BYTES must be at least {MIN_PART_BYTES}")
        if settings.s3_parts_in_flight < 1:
            raise ValueError("ASSETGEN_S3_PARTS_IN_FLIGHT must be at least 1")
        if not settings.s3_region:
            # Without a region the SDK asks S3 for it, which presigning must never wait for.
            raise ValueError("ASSETGEN_S3_REGION must not be empty")
        self.name = settings.s3_bucket
        self.endpoint = settings.s3_endpoint
        self.part_bytes = settings.part_size_bytes
        self.parts_in_flight = settings.s3_parts_in_flight
        self._settings = settings
        self._client = Minio(
            host,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=secure,
            region=settings.s3_region,
            http_client=_http_client(settings),
        )
        public_host, public_secure = parse_endpoint(
            settings.s3_public_endpoint or settings.s3_endpoint, setting="ASSETGEN_S3_PUBLIC_ENDPOINT"
        )
        # Signing only: with the region given, presigning is pure computation (no request to S3).
        self._signer = Minio(
            public_host,
            access_key=settings.s3_access_key,
            secret_key=settings.s3_secret_key,
            secure=public_secure,
            region=settings.s3_region,
        )

    async def _run(self, what: str, call: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(call)
        except S3Error as exc:
            if exc.code in _MISSING_CODES:
                raise NotFound(f"{what}: no such object") from None
            raise AssetGenError(f"S3 refused {what}: {exc.code}: {exc.message}") from exc
        except _S3_FAILURES as exc:
            raise Unavailable(
                f"S3 at {self.endpoint} is unavailable ({what} failed after "
                f"{self._settings.s3_attempts} tries): {exc}"
            ) from exc
        except MinioException as exc:
            raise Unavailable(f"S3 at {self.endpoint} answered {what} unexpectedly: {exc}") from exc

    async def ensure(self, timeout: float) -> None:
        """Creates the bucket unless it exists, retrying until S3 answers or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                await self._run(f"creating bucket {self.name}", self._ensure_blocking)
                return
            except Unavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise Unavailable(f"S3 not ready within {timeout:g} s: {exc.message}") from exc
                logger.warning("S3 not ready yet", extra={"error": exc.message, "bucket": self.name})
            # Waiting for a dependency to come up, with backoff: nothing to poll but S3 itself.
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    def _ensure_blocking(self) -> None:
        if self._client.bucket_exists(self.name):
            return
        try:
            self._client.make_bucket(self.name)
            logger.info("bucket created", extra={"bucket": self.name})
        except S3Error as exc:
            if exc.code not in _BUCKET_TAKEN_CODES:
                raise

    async def put(self, key: str, data: bytes, *, content_type: str, sha256: str) -> None:
        """Stores ``data`` under ``key`` in one request, its type and checksum included."""
        headers = _object_headers(content_type)
        headers[f"x-amz-meta-{SHA256_METADATA}"] = sha256
        await self._run(
            f"storing {key}", lambda: minio_internals.put_object(self._client, self.name, key, data, headers)
        )

    async def begin_upload(self, key: str, *, content_type: str) -> str:
        """Starts a multipart upload of ``key``; returns its upload id."""
        headers = _object_headers(content_type)
        return await self._run(
            f"starting the upload of {key}",
            lambda: minio_internals.create_multipart_upload(self._client, self.name, key, headers),
        )

    async def upload_part(self, key: str, upload_id: str, number: int, data: bytes | bytearray) -> Part:
        """Sends part ``number`` (from 1) of an upload; ``data`` must not change until this returns."""
        body = cast(bytes, data)  # the SDK hashes and sends any bytes-like body as it is
        return await self._run(
            f"storing part {number} of {key}",
            lambda: minio_internals.upload_part(self._client, self.name, key, upload_id, number, body),
        )

    async def complete_upload(self, key: str, upload_id: str, parts: list[Part]) -> None:
        """Joins the sent ``parts`` (in order) into the object: only now does ``key`` exist."""
        await self._run(
            f"completing the upload of {key}",
            lambda: minio_internals.complete_multipart_upload(self._client, self.name, key, upload_id, parts),
        )

    async def abort_upload(self, key: str, upload_id: str) -> None:
        """Discards an unfinished upload and the parts S3 holds for it."""
        await self._run(
            f"aborting the upload of {key}",
            lambda: minio_internals.abort_multipart_upload(self._client, self.name, key, upload_id),
        )

    async def stat(self, key: str) -> ObjectInfo:
        """Size, type and checksum of ``key`` (no checksum if stored in parts); NotFound when missing."""
        info = await self._run(f"describing {key}", lambda: self._client.stat_object(self.name, key))
        metadata = info.metadata or {}
        return ObjectInfo(
            key=key,
            content_type=info.content_type or "application/octet-stream",
            size_bytes=int(info.size or 0),
            sha256=str(metadata.get(f"x-amz-meta-{SHA256_METADATA}", "")),
        )

    async def keys(self, prefix: str) -> list[str]:
        """Keys of the objects under ``prefix``."""

        def listing() -> list[str]:
            found = self._client.list_objects(self.name, prefix=prefix, recursive=True)
            return [item.object_name for item in found if item.object_name]

        return await self._run(f"listing {prefix}", listing)

    async def delete(self, key: str) -> None:
        """Removes ``key``; removing a missing object succeeds (S3 semantics)."""
        await self._run(f"deleting {key}", lambda: self._client.remove_object(self.name, key))

    def read_url(self, key: str) -> str:
        """A URL that reads ``key``, made locally (no request to S3), so it is called on the event loop.

        Under the public base URL when one is set; otherwise presigned for the public endpoint, valid for
        the configured expiry.
        """
        base = self._settings.s3_public_base_url.rstrip("/")
        if base:
            return f"{base}/{quote(key, safe='/')}"
        expires = timedelta(seconds=self._settings.presign_expiry_seconds)
        return self._signer.presigned_get_object(self.name, key, expires=expires)


def _object_headers(content_type: str) -> DictType:
    return {"Content-Type": content_type, "Cache-Control": CACHE_CONTROL}
